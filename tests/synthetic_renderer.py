"""A fast, deterministic FAKE renderer for the exporter's tests (not physics, not in the library).

Named in test configs as ``renderer: synthetic_renderer:render_synthetic`` (this folder is on the
test's ``sys.path``; subprocesses get it through ``PYTHONPATH``). It follows the contract of
:func:`ddsa_sim.export.sample.render_sample`: crude CT line integral, a random 2D vessel walk fixed per
tree seed, Poisson noise from ``spec.seed``. ``renderer_options.delay_s`` makes it sleep (the
kill-and-resume test), ``renderer_options.fail`` raise (a run that fails).
"""

from __future__ import annotations

import time

import numpy as np

from ddsa_sim.export.sample import sample_geometry
from ddsa_sim.volumes.materials import hu_to_density

NAME = "synthetic_renderer:render_synthetic"


def _vessel_walk(vessel_seed: int, shape: tuple[int, int]) -> np.ndarray:
    """Iodine path length (cm) of a random 2D vessel walk, fixed per tree seed."""
    h, w = shape
    rng = np.random.default_rng(vessel_seed)
    thick = np.zeros(shape, dtype=np.float64)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(2 + int(rng.integers(0, 3))):
        p = np.array([h * (0.3 + 0.4 * rng.random()), w * (0.3 + 0.4 * rng.random())])
        heading = 2 * np.pi * rng.random()
        radius_px = max(0.6, 0.03 * min(h, w) * (0.5 + rng.random()))
        for _ in range(max(4, (h + w) // 4)):
            heading += 0.4 * rng.standard_normal()
            p = p + np.array([np.sin(heading), np.cos(heading)]) * radius_px
            d2 = (yy - p[0]) ** 2 + (xx - p[1]) ** 2
            # radius_px pixels of ~1 mm: chord length through a cylinder, in cm
            thick = np.maximum(thick, 0.2 * np.sqrt(np.clip(radius_px**2 - d2, 0, None)) / 10)
            radius_px = max(0.6, radius_px * 0.985)
    return thick


def render_synthetic(spec, cache) -> dict[str, np.ndarray]:
    """Deterministic fake images of ``spec`` (see the module docstring)."""
    if spec.renderer_options.get("fail"):
        raise RuntimeError("fake renderer failure")
    delay = float(spec.renderer_options.get("delay_s", 0.0))
    if delay > 0:
        time.sleep(delay)
    ct = cache.get(spec).ct
    h, w = spec.image_shape
    rng = np.random.default_rng(spec.seed)
    area = hu_to_density(ct.data).astype(np.float64).sum(axis=1) * float(ct.spacing_mm[1]) / 10.0  # g/cm^2, (I, K)
    # nearest-neighbour view of the line-integral image, shifted with the pose
    ri = ((np.arange(h) + 0.5) / h * area.shape[0] + spec.alpha_deg / 10.0).astype(int) % area.shape[0]
    ci = ((np.arange(w) + 0.5) / w * area.shape[1] + spec.beta_deg / 10.0).astype(int) % area.shape[1]
    mask_clean = 0.2 * (70.0 / spec.kvp) * area[np.ix_(ri, ci)]  # crude mu/rho of tissue
    thick_cm = np.roll(_vessel_walk(int(spec.vessel_source["seed"]), (h, w)),
                       (int(spec.alpha_deg) % max(h, 1) // 8, int(spec.beta_deg) % max(w, 1) // 8), axis=(0, 1))
    iodine = spec.iodine_mg_per_ml * thick_cm  # mg/cm^2
    dsa_target = iodine * 0.03 * (70.0 / spec.kvp) ** 2  # crude mass attenuation of iodine
    mask_at_contrast = mask_clean
    if spec.motion != "none":
        mask_at_contrast = np.roll(mask_clean, tuple(int(v) for v in rng.integers(-2, 3, size=2)), axis=(0, 1))
    contrast_clean = mask_at_contrast + dsa_target

    def record(clean: np.ndarray) -> np.ndarray:
        if not spec.noise:
            return clean
        counts = rng.poisson(spec.photons_per_pixel * np.exp(-clean))
        return -np.log(np.maximum(counts, 1) / spec.photons_per_pixel)

    iso, proj = sample_geometry(spec, ct.center_mm)
    return {
        "mask": record(mask_clean).astype(np.float32),
        "contrast": record(contrast_clean).astype(np.float32),
        "contrast_clean": contrast_clean.astype(np.float32),
        "dsa_target": dsa_target.astype(np.float32),
        "iodine_mg_per_cm2": iodine.astype(np.float32),
        "vessel_mask": (iodine > 0).astype(np.uint8),
        "isocenter_mm": iso,
        "projection_matrix": proj,
    }
