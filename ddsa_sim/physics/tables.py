"""Ranges of the physical data tables every model reads (shared by the spectra and the attenuation)."""

__all__ = ["ELAM_MAX_KEV"]

#: Highest photon energy of the Elam tables (xraydb) the attenuation is read from, keV: the top of every
#: spectrum (a tube potential above it is refused by the spectra).
ELAM_MAX_KEV = 433.0
