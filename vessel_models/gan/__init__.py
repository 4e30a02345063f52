"""Learned 3D vessel generators: a WGAN-GP and a StyleGAN2-style model of vessel label volumes.

Independent of ``ddsa_sim`` (torch only). Modules, one job each:

* :mod:`~vessel_models.gan.data` -- label volumes (NIfTI folders or voxelized procedural trees) at a
  common spacing, random patches / centred crops, flips;
* :mod:`~vessel_models.gan.wgan`, :mod:`~vessel_models.gan.stylegan` -- the networks;
* :mod:`~vessel_models.gan.losses` -- Wasserstein + gradient penalty, logistic + R1;
* :mod:`~vessel_models.gan.config` -- the YAML training config;
* :mod:`~vessel_models.gan.checkpoint` -- ``weights_only`` checkpoints;
* :mod:`~vessel_models.gan.train` -- the training loop (single process or torchrun);
* :mod:`~vessel_models.gan.precision` -- the CPU autocast type (bfloat16) and whether this CPU loses by it
  (the DDSA trainer asks it too);
* :mod:`~vessel_models.gan.sample` -- label volumes from a checkpoint;
* :mod:`~vessel_models.gan.quality` -- vessel statistics and distances between volume sets.

Volumes are ``(D, H, W)`` arrays in voxel index order ``(i, j, k)``; spacings in mm.
"""

__all__: list[str] = []
