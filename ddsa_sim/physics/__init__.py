"""X-ray physics: spectra (SpekPy), attenuation (xraydb), detector response, noise, scatter.

This package knows nothing of the projector, scene, export or training code. Units are in the
names: ``_kev``, ``_mm``, ``_g_per_cm2``, ``_g_per_cc``,
``iodine_mg_per_ml`` (mg of iodine per ml). See docs/physics.md.
"""

from ddsa_sim.physics.attenuation import (
    MATERIALS,
    Material,
    attenuation_matrix,
    contrast_agent_material,
    displaced_blood_g_per_mg_iodine,
    get_material,
    iodinated_blood,
    mass_attenuation,
)
from ddsa_sim.physics.detector import (
    Detector,
    DetectorResponse,
    flat_field_quanta,
    integrate_spectrum,
    neglog,
    spectral_weights,
)
from ddsa_sim.physics.noise import (
    add_electronic_noise,
    add_quantum_noise,
    photons_per_pixel_from_mas,
)
from ddsa_sim.physics.scatter import (
    AntiScatterGrid,
    ScatterGeometry,
    ScatterParams,
    add_scatter,
    scatter_kernel_superposition,
    spr_uniform_disc,
    water_equivalent_thickness_mm,
)
from ddsa_sim.physics.spectra import (
    DEFAULT_FILTER_AL_MM,
    PRESETS,
    Spectrum,
    air_kerma_ugy,
    get_spectrum,
    load_spectrum_file,
    mono_spectrum,
    preset_spectrum,
    spekpy_spectrum,
    tabulated_spectrum,
)

__all__ = [
    "DEFAULT_FILTER_AL_MM",
    "MATERIALS",
    "PRESETS",
    "AntiScatterGrid",
    "Detector",
    "DetectorResponse",
    "Material",
    "ScatterGeometry",
    "ScatterParams",
    "Spectrum",
    "add_electronic_noise",
    "add_quantum_noise",
    "add_scatter",
    "air_kerma_ugy",
    "attenuation_matrix",
    "contrast_agent_material",
    "displaced_blood_g_per_mg_iodine",
    "flat_field_quanta",
    "get_material",
    "get_spectrum",
    "integrate_spectrum",
    "iodinated_blood",
    "load_spectrum_file",
    "mass_attenuation",
    "mono_spectrum",
    "neglog",
    "photons_per_pixel_from_mas",
    "preset_spectrum",
    "scatter_kernel_superposition",
    "spectral_weights",
    "spekpy_spectrum",
    "spr_uniform_disc",
    "tabulated_spectrum",
    "water_equivalent_thickness_mm",
]
