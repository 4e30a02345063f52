"""``python -m ddsa_sim.cli`` runs the ``ddsa-sim`` command (also ``torchrun ... -m ddsa_sim.cli train``)."""

from ddsa_sim.cli import main

if __name__ == "__main__":
    main()
