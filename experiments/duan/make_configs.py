"""Write the export configs of Duan's experiment with physics ablations (experiments/duan_ablation.sh).

One place defines every dataset of the experiment, so the rows and test sets differ only where this file
says they do; the YAML files it writes next to itself are committed for reading and are what the script
exports. Re-run after an edit: ``python experiments/duan/make_configs.py``.

Design (docs/results.md, "Duan's experiment at CPU scale"):

* Trees: the published L-system design (``params: published-grid``), 16 poses per skeleton, in every
  training set; ``cow`` and ``coronary`` templates appear only in test sets (held-out generators). Test
  sets: 16 trees x 2 poses (up to v4: 1-2 trees x 16 poses, so that a set's numbers were those of its
  one or two trees).
* Anatomy: every chest slab virtual non-contrast (a DSA mask is taken before contrast); training on
  chest slabs ``z0R``, ``z1R`` (val ``z0L``); the common test set on ``z1L`` (heart,
  left lung); held out: the cranial slabs ``z2L``, ``z2R`` (neck, shoulders, clavicles) and the TIGRE head.
* Physics rows: (a) noise only, (b) + scatter, (c) + detector blur, (d) + rigid motion, (e) everything:
  + exposure randomisation and pseudo-patient variants with procedural bone shells, bones and air cavities;
  (f) row e + procedural heads (``builtin:head-phantom-<seed>``, built from published anatomy, not from
  the held-out TIGRE head) as further pseudo-patients: heads 0-2 train, head 3 val.
* Exposure: automatic exposure per frame behind the patient at fluoroscopy level, the input DDSA is
  meant for (docs/dsa.md: DSA about 1-5 uGy per frame, fluoroscopy 10-100x lower): rows a-d 0.03-0.3 uGy,
  row e 0.01-1 uGy (100x, fluoroscopy to low-dose DSA); held-out exposures 0.006-0.009 uGy, 105-125 kVp,
  6-8 mm Al + 0.3 mm Cu.
* Images: 128 x 128 pixels of 1.16 mm (0.194 mm binned 6 x 6, a 2 x 2-binned fluoroscopy pixel of 0.39 mm
  would hold 9x fewer quanta).
* Diagnostics, not rows: ``test_common_fed`` and ``test_common_fine`` (v15, v17); ``fit_cow_heads`` (row s's
  procedural heads, every tree the Circle of Willis) and ``fit_cow_heads_plain`` (the same without
  distractors), the stores of v22's capacity diagnostic, trained on and scored on their own frames;
  ``fit_cow_heads_many`` (v23: its 192 training frames from 12 heads of one pseudo-patient each instead
  of 3 heads of four); ``fit_cow_heads_textured`` (v25: ``fit_cow_heads`` with mottled bone).
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

__all__ = ["TRAIN_ROWS", "TEST_SETS", "configs", "main"]

HERE = Path(__file__).resolve().parent
SLABS = "../../out/chest_slabs"                 # written by experiments/prepare_chest_slabs.py
POSES_PER_TREE = 16                              # Duan et al.: 16 views of every skeleton (training sets)
TEST_TREES = 16                                  # skeletons per test set, spread evenly over its CTs, ...
TEST_POSES_PER_TREE = 2                          # ... 2 views each: 32 images from 16 trees, not 2 trees
STRUCTURES = "builtin:chest-ct-structures"       # the slabs' labels are TotalSegmentator crops


def _slab(name: str, split: str, variants: dict | None = None) -> dict:
    """A chest slab; ``variants`` default: one identity variant, i.e. the slab as it is, virtual non-contrast."""
    return {"path": f"{SLABS}/chest_{name}.nii.gz", "labels": f"{SLABS}/labels/chest_{name}.nii.gz",
            "structures": STRUCTURES, "split": split, "variants": copy.deepcopy(variants or VNC_ONLY)}


HEAD = {"path": "builtin:tigre-head[46:212,0:228,0:212]", "split": "test"}
#: procedural training heads of row f (ddsa_sim.volumes.head_phantom): seed -> split
HEAD_PHANTOMS = {0: "train", 1: "train", 2: "train", 3: "val"}
#: the training heads of the diagnostic ``fit_cow_heads_many``: 12 seeds, the validation head (3) left out
MANY_TRAINING_HEADS = (0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12)
LSYSTEM = {"generator": "lsystem", "params": "published-grid"}

#: exposure of rows a-d: a fixed spectrum range, fluoroscopy-level dose behind the patient (on a log grid)
EXPOSURE_FIXED = {"spectrum": {"kvp": {"min": 70, "max": 100}, "filter_al_mm": 4.0},
                  "detector_air_kerma_ugy": {"grid": [0.03, 0.1, 0.3]}}
#: row e: randomised over clinical ranges (kept below the held-out exposures); filtrations on a grid, so
#: that the SpekPy spectra (about 1 s each) are computed once per kVp node and filter and then cached
EXPOSURE_RANDOM = {"spectrum": {"kvp": {"min": 60, "max": 100}, "filter_al_mm": {"grid": [2.0, 3.0, 4.0, 5.0]},
                                "filter_cu_mm": {"grid": [0.0, 0.1, 0.2]}},
                   "detector_air_kerma_ugy": {"grid": [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]}}
#: held-out exposures: above the training kVp and filtration, below the training dose (noisier)
EXPOSURE_HELD_OUT = {"spectrum": {"kvp": {"min": 105, "max": 125}, "filter_al_mm": {"grid": [6.0, 7.0, 8.0]},
                                  "filter_cu_mm": 0.3},
                     "detector_air_kerma_ugy": {"min": 0.006, "max": 0.009}}
#: the builtin chest CT is contrast-enhanced; a DSA mask is taken before contrast, so every slab is made
#: virtual non-contrast (enhanced labelled blood -> 40 HU) through an identity variant (renders as its source)
VNC_ONLY = {"count": 1, "vnc": "auto"}
VARIANTS = {"count": 4, "deform_mm": {"min": 0, "max": 6}, "smooth_mm": 60,
            "scale": {"min": 0.85, "max": 1.15}, "rotate_deg": {"min": -5, "max": 5},
            "hu_offset": {"min": -10, "max": 10}, "hu_scale": {"min": 0.95, "max": 1.05}, "vnc": "auto",
            # domain randomisation of anatomy: bone shells (skull-like), bones and air cavities the slabs lack
            "distractors": {"shells": {"min": 1, "max": 3}, "bones": {"min": 1, "max": 4}, "cavities": {"min": 0, "max": 3}}}
#: rows with foams: the same pseudo-patients with air-cell foams too (bone ellipsoids honeycombed by air cells)
VARIANTS_FOAMS = copy.deepcopy(VARIANTS)
VARIANTS_FOAMS["distractors"]["foams"] = {"min": 1, "max": 3}
#: the bones of the cortical-bone rows: the ``bones`` distractors get a cortex of compact bone around a
#: cancellous core, as real bones have; a solid bone of vessel width projects as a vessel does (1500 HU bone
#: attenuates as blood with 50 mg/ml iodine at 55 keV), so solid ones teach that vessel-like tubes are background
CORTICAL_BONES = {"bone_hu": {"min": 800, "max": 1900}, "bone_cortex_mm": {"min": 0.5, "max": 4.0},
                  "bone_core_hu": {"min": 100, "max": 400}}

BASE = {
    "vessels": {"per_ct": 4, "sources": [LSYSTEM]},
    "placement": {"mode": "auto", "root": "ct-center", "jitter_mm": 15.0, "rotation_deg": {"min": 0, "max": 360}},
    "pose": {"alpha_deg": {"min": -30, "max": 30}, "beta_deg": {"min": -20, "max": 20}, "gamma_deg": 0,
             "isocenter_jitter_mm": 10.0},
    # 768 x 0.194 mm binned 6 x 6: 128 x 128 pixels of 1.16 mm (0.6 mm and a 78 mm field at the isocenter)
    "detector": {"rows": 768, "cols": 768, "pixel_mm": 0.194, "binning": 6, "mtf50_cycles_per_mm": None},
    "iodine_mg_per_ml": {"min": 50, "max": 150},
    "effects": {"noise": True, "scatter": False, "motion": "none"},
    "renderer": "scene",
    "renderer_options": {"vessel_spacing_mm": 0.6, "method": "trilinear"},
    "max_ct_voxels": 157286400,
    "ct_cache_size": 1,
}


#: rows with exposure randomisation, rows whose anatomies are pseudo-patients with distractors, rows with
#: the procedural heads, rows whose distractors include air-cell foams
EXPOSURE_ROWS, VARIANT_ROWS, HEAD_ROWS, FOAM_ROWS = "efgijklmnopqrs", "efhijklmnopqrs", "fijklnoqrs", "ijklnoqrs"
#: rows whose bones have a cortex (:data:`CORTICAL_BONES`)
CORTEX_ROWS = "lmnopqrs"
#: pseudo-patients per source CT where a row has other than ``VARIANTS["count"]``: row n asks whether the
#: networks miss the held-out head and generators for want of anatomies and trees (rows e-m train on 20 of
#: each, 16 poses apiece) rather than for want of poses, capacity or a physics effect
VARIANT_COUNT = {"n": 12}
#: rows whose detector roll (``pose.gamma_deg``, about the central ray) is drawn over the full circle instead
#: of 0: the anatomy's long axis (spine, sternum, slab edges) then runs at every angle in the image, as the
#: trees (placed at random rotations) already do, so the direction of a structure no longer tells bone from
#: vessel; rows a-n taught the networks to leave straight tubes within 10 deg of the image axes undrawn
#: (docs/results.md, v14), which is where a vertebral or carotid artery runs in a frontal view
ROLL_ROWS = "op"
#: rows whose trees are fed along the body axis (``placement.feeding_direction``, docs/vessels.md §5c): each
#: tree's root-to-centroid direction within 45 deg of superior, turned about it at random, where rows a-p
#: draw every rotation. In a frontal view the trunks then run within about 45 deg of the image columns, as
#: carotid, vertebral, iliac and femoral arteries do, while the anatomy keeps its orientation: the other
#: way out of the direction bias of v14 (trees along the body axis as often as real ones, not the detector
#: rolled), set once before the row's first training. It moves the networks' direction prior to the
#: vertical instead of removing it and costs 0.5-1.6 dB: its networks under-draw the brightest vessels, which
#: trees seldom seen end-on rarely make, and three of five draw less everywhere (docs/results.md, v15)
FEEDING_ROWS = "q"
FEEDING = {"feeding_direction": [0, 0, 1], "feeding_cone_deg": 45.0}
#: a second generator for half the trees of row j: space colonisation (vessel_models.colonize) over calibres
#: from 0.6-2 mm leaves to roots of 2.7-18 mm and growth steps of 2-6 mm, so that the training trees
#: are not all of one grammar (the held-out generators, Circle of Willis and coronary, are neither)
COLONIZE = {"generator": "colonize", "params": {"terminal_radius_mm": {"min": 0.3, "max": 1.0},
                                                "step_mm": {"min": 2.0, "max": 6.0},
                                                "n_attractors": {"grid": [300, 600, 1000, 1500]}}}

#: a second L-system for half the trees of row k: long, smooth, sparsely branched arteries (1-4 generations,
#: segments 10-25 diameters long, 5-25 degrees RMS tortuosity, 2-6 mm roots: a carotid, vertebral or M1
#: segment crossing the 78 mm field) where the published grid draws bushes (6-13 generations, 4-9 diameters,
#: 45 degrees); chosen after v6 found the Circle of Willis missed for its long straight arteries, not
#: derived from its template (vessel_models/willis.py)
LONG_ARTERIES = {"generator": "lsystem", "params": {"iterations": {"grid": [1, 2, 3, 4]},
                                                    "length_diameter_ratio": {"min": 10.0, "max": 25.0},
                                                    "tortuosity_deg": {"min": 5.0, "max": 25.0},
                                                    "root_diameter_mm": {"min": 2.0, "max": 6.0}}}
#: rows with half their trees from :data:`LONG_ARTERIES`
LONG_ARTERY_ROWS = "klnoqrs"

#: Matched controls, not training recipes: row l with one held-out set's missing ingredient in training, to tell
#: a miss the data can teach from one it cannot (docs/results.md, v21). Row r is trained at the held-out
#: exposures (:data:`EXPOSURE_HELD_OUT` instead of :data:`EXPOSURE_RANDOM`); row s draws the Circle of Willis
#: template for the procedural training heads (about half their trees; the TIGRE head stays held out)
MATCHED_EXPOSURE_ROWS, MATCHED_COW_ROWS = "r", "s"
COW_ON_HEADS = {"generator": "cow", "cts": ["head-phantom-*"], "weight": 2.0}


def _row_physics(row: str) -> dict:
    """The physics switches of ablation row ``row`` (cumulative a -> d; e-h build on d)."""
    k = "abcd".index(row) if row in "abcd" else 4
    cfg = copy.deepcopy(BASE)
    cfg.update(copy.deepcopy(EXPOSURE_FIXED))
    if k >= 1:
        cfg["effects"]["scatter"] = True                        # ratio-10 grid on every sample
    if k >= 2:
        cfg["detector"]["mtf50_cycles_per_mm"] = 1.46            # CsI light spread (docs/physics.md)
    if k >= 3:
        cfg["effects"]["motion"] = "rigid"                       # 1 deg / 1.5 mm between mask and contrast
    if row in EXPOSURE_ROWS:
        cfg.update(copy.deepcopy(EXPOSURE_HELD_OUT if row in MATCHED_EXPOSURE_ROWS else EXPOSURE_RANDOM))
        cfg["effects"]["grid_fraction"] = 0.8
        cfg["detector"]["mtf50_cycles_per_mm"] = {"min": 0.8, "max": 2.0}
    return cfg


#: training sets: row -> what it adds to the previous row
TRAIN_ROWS = {
    "a": "noise only",
    "b": "+ scatter (ratio-10 grid)",
    "c": "+ detector blur (CsI MTF50 1.46 cycles/mm)",
    "d": "+ rigid motion",
    "e": "+ exposure randomisation, grid on/off, MTF50 0.8-2.0, pseudo-patients with bone / air distractors",
    "f": "row e + procedural head pseudo-patients (3 heads train, 1 val)",
    "g": "row d + exposure randomisation, grid on/off, MTF50 0.8-2.0 (row e without pseudo-patients)",
    "h": "row d + pseudo-patients with bone / air distractors (row e without exposure randomisation)",
    "i": "row f + air-cell foam distractors (1-3 per pseudo-patient)",
    "j": "row i with half the trees from a second generator (space colonisation)",
    "k": "row i with half the trees from a second L-system of long, smooth, sparsely branched arteries",
    "l": "row k with cortical bones (a compact-bone cortex around a cancellous core) instead of solid ones",
    "m": "row e with row l's cortical bones (a warm-up for row l)",
    "n": "row l with 3x the pseudo-patients (12 per source CT, each its own distractors and tree)",
    "o": "row l with the detector rolled by -180..180 deg (the body axis at every angle in the image)",
    "p": "row m with row o's detector roll (a warm-up for row o)",
    "q": "row l with its trees fed along the body axis (root-to-centroid within 45 deg of superior)",
    "r": "row l at the held-out exposures (a matched control for the exposure set, not a recipe)",
    "s": "row l with the Circle of Willis on the procedural heads (a matched control for that set, not a recipe)",
}


def _training_count(cts: list[dict], trees_per_ct: int) -> int:
    """Samples of a training set: its pseudo-patients x trees per CT x :data:`POSES_PER_TREE` poses."""
    return sum(ct["variants"]["count"] for ct in cts) * trees_per_ct * POSES_PER_TREE


def _train_config(row: str) -> dict:
    cfg = _row_physics(row)
    if row in VARIANT_ROWS:
        # 4 pseudo-patients per slab (each its own distractors; row n: 12): 12 anatomies x 1 tree = as many
        # trees (12) as rows a-d (3 slabs x 4)
        variants = copy.deepcopy(VARIANTS_FOAMS if row in FOAM_ROWS else VARIANTS)
        variants["count"] = VARIANT_COUNT.get(row, variants["count"])
        if row in CORTEX_ROWS:
            variants["distractors"].update(CORTICAL_BONES)
        cts = [_slab("z0R", "train", variants), _slab("z1R", "train", variants), _slab("z0L", "val", variants)]
        cfg["vessels"]["per_ct"] = 1
    else:
        cts = [_slab("z0R", "train"), _slab("z1R", "train"), _slab("z0L", "val")]
    if row in HEAD_ROWS:
        cts += [{"path": f"builtin:head-phantom-{seed}", "split": split, "variants": copy.deepcopy(variants)}
                for seed, split in HEAD_PHANTOMS.items()]
    if row == "j":
        cfg["vessels"]["sources"] = [LSYSTEM, COLONIZE]
    if row in LONG_ARTERY_ROWS:
        cfg["vessels"]["sources"] = [LSYSTEM, LONG_ARTERIES]
    if row in MATCHED_COW_ROWS:
        cfg["vessels"]["sources"].append(copy.deepcopy(COW_ON_HEADS))
    if row in ROLL_ROWS:
        cfg["pose"]["gamma_deg"] = {"min": -180, "max": 180}
    if row in FEEDING_ROWS:
        cfg["placement"].update(FEEDING)
    cfg.update(cts=cts, count=_training_count(cts, cfg["vessels"]["per_ct"]), seed=17000,
               split={"train": 0.67, "val": 0.17, "test": 0.16})
    return cfg


def _test(cts: list[dict], sources: list[dict], exposure: dict, motion: bool) -> dict:
    cfg = _row_physics("e")
    cfg.update(copy.deepcopy(exposure))
    cfg["effects"]["motion"] = "rigid" if motion else "none"
    cfg["vessels"] = {"per_ct": TEST_TREES // len(cts), "sources": sources}
    cfg.update(cts=cts, count=TEST_TREES * TEST_POSES_PER_TREE, seed=17100,
               split={"train": 0.67, "val": 0.17, "test": 0.16})
    return cfg


#: test sets (split "test", :data:`TEST_TREES` trees x :data:`TEST_POSES_PER_TREE` poses): name -> (description,
#: CTs, vessel sources, exposure)
TEST_SETS = {
    "common": ("in-distribution anatomy region (z1L), full physics", [_slab("z1L", "test")], [LSYSTEM],
               EXPOSURE_RANDOM),
    "ood_anatomy_neck": ("held-out anatomy: neck / shoulder slabs z2L, z2R",
                         [_slab("z2L", "test"), _slab("z2R", "test")], [LSYSTEM], EXPOSURE_RANDOM),
    "ood_anatomy_head": ("held-out anatomy: TIGRE head, L-system", [HEAD], [LSYSTEM], EXPOSURE_RANDOM),
    "ood_generator_cow": ("held-out generator: Circle of Willis on the TIGRE head", [HEAD],
                          [{"generator": "cow"}], EXPOSURE_RANDOM),
    "ood_generator_coronary": ("held-out generator: coronary tree on the heart (z1L)", [_slab("z1L", "test")],
                               [{"generator": "coronary"}], EXPOSURE_RANDOM),
    "ood_exposure": ("held-out exposures: 105-125 kVp, 6-8 mm Al + 0.3 mm Cu, 0.006-0.009 uGy (z1L)",
                     [_slab("z1L", "test")], [LSYSTEM], EXPOSURE_HELD_OUT),
}


def configs() -> dict[str, dict]:
    """Every export config of the experiment, by file stem."""
    out = {f"train_{row}": _train_config(row) for row in TRAIN_ROWS}
    out["test_common"] = _test(*TEST_SETS["common"][1:], motion=True)
    # a diagnostic of row q: `common` with its trees fed as row q's are (docs/results.md, v15)
    out["test_common_fed"] = copy.deepcopy(out["test_common"])
    out["test_common_fed"]["placement"].update(FEEDING)
    # a diagnostic of the networks' pixel scale: `common` on a 3x finer detector grid (binning 2: 384 x 384 pixels
    # of 0.39 mm, 0.20 mm at the isocenter, a clinical run's scale), the same scenes (docs/results.md, v17)
    out["test_common_fine"] = copy.deepcopy(out["test_common"])
    out["test_common_fine"]["detector"]["binning"] = 2
    # a diagnostic of the networks' capacity: row s's procedural heads (3 train, 1 val) with every tree the
    # Circle of Willis and nothing else, row s's physics; whether a network of a given width fits these
    # frames at all, which row s's networks do not where they train on them (docs/results.md, v22)
    fit = copy.deepcopy(out["train_s"])
    fit["cts"] = [ct for ct in fit["cts"] if ct["path"].startswith("builtin:head-phantom-")]
    fit["vessels"]["sources"] = [{"generator": "cow"}]
    fit["count"] = _training_count(fit["cts"], fit["vessels"]["per_ct"])
    out["fit_cow_heads"] = fit
    # the same heads without the distractors (solid and cortical bones of vessel width, shells, foams, cavities):
    # whether those structures, drawn to look like vessels in a frame, are what caps the fit
    plain = copy.deepcopy(fit)
    for ct in plain["cts"]:
        del ct["variants"]["distractors"]
    out["fit_cow_heads_plain"] = plain
    # the same 192 training frames from 12 distinct heads x 1 pseudo-patient instead of 3 heads x 4: whether
    # distinct source anatomies teach a new head better than pseudo-patients of fewer (docs/results.md, v23)
    many = copy.deepcopy(fit)
    val = [ct for ct in many["cts"] if ct["split"] == "val"]
    one = copy.deepcopy(val[0]["variants"])
    one["count"] = 1
    many["cts"] = [{"path": f"builtin:head-phantom-{seed}", "split": "train", "variants": copy.deepcopy(one)}
                   for seed in MANY_TRAINING_HEADS] + val
    many["count"] = _training_count(many["cts"], many["vessels"]["per_ct"])
    out["fit_cow_heads_many"] = many
    # the same heads with mottled bone (variants.bone_texture at its defaults: amplitude 0-0.4, kernel 0.5-2 mm):
    # whether a network that has seen bony mottle stops drawing an unseen head's as vessels (docs/results.md, v25)
    textured = copy.deepcopy(fit)
    for ct in textured["cts"]:
        ct["variants"]["bone_texture"] = {}
    out["fit_cow_heads_textured"] = textured
    for name, (_, cts, sources, exposure) in TEST_SETS.items():
        if name == "common":
            continue
        for motion in (True, False):
            out[f"test_{name}_{'motion' if motion else 'static'}"] = _test(cts, sources, exposure, motion)
    return out


def main() -> None:
    for stem, cfg in configs().items():
        header = f"# Generated by experiments/duan/make_configs.py (edit that file, not this one): {stem}\n"
        (HERE / f"{stem}.yaml").write_text(header + yaml.safe_dump(cfg, sort_keys=False))
    print(f"wrote {len(configs())} configs to {HERE}")


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # --help says what it writes
    main()
