"""DSA image-formation helpers used by :mod:`ddsa_sim.scene`: vessel sources, placement of a tree
in the patient, patient motion between mask and contrast frames, and frame recording (scatter,
quantum / electronic noise, detector). Plain functions over arrays; see docs/dsa.md."""
