"""DDSA training: datasets, augmentation, U-Net / U-Net-GAN, losses, metrics, loops, CLI.

Torch is imported only when this subpackage is used.
"""
