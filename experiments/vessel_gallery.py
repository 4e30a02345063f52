"""The vessel gallery of docs/vessels.md: anatomical templates rendered by ``ddsa-sim dsa``.

Writes ``docs/img/gallery_*.png`` (each a strip mask | contrast | conventional DSA | clean target):

* ``gallery_cerebral_ap.png``, ``gallery_cerebral_lateral.png``: ``--vessels cow`` on the procedural head
  ``builtin:head-phantom-1`` (skull, skull base, orbits, sinuses, face, neck), placed by the default anatomical
  registration and conformed to its compartments, the C-arm aimed at the brain;
* ``gallery_cerebral_sequence.png``, ``gallery_cerebral_sequence_lateral.png``: the template with its venous
  part (the default), 4 contrast frames (``--frames 4``): arterial, capillary (parenchymal blush), early
  venous, venous; AP and lateral;
* ``gallery_coronary_rao.png``, ``gallery_coronary_lao.png``: ``--vessels coronary`` on the builtin
  chest CT with its labels (taken by default): placed on the heart label and fitted to the aorta's, the
  catheter coming up the labelled descending aorta, over the arch and down into the ostium; RAO 30 and LAO 40;
* ``gallery_coronary_no_labels.png``: the same with ``--labels none``: placed by the lung heuristic, the
  catheter coming straight down to the ostium, LAO 40;
* ``gallery_cerebral_eca_lateral.png``: a selective left external carotid injection (``injection=ECA_L``), lateral:
  the superficial temporal artery's frontal and parietal branches in the scalp, the middle meningeal artery's on
  the dura, the occipital, facial and maxillary arteries;
* ``gallery_cerebral_ica_lateral.png``: a selective left internal carotid injection (``injection=ICA_L``), lateral:
  the siphon, the ophthalmic artery running forwards into the orbit and up the forehead, the anterior choroidal
  artery running back, the anterior and middle cerebral arteries;
* ``gallery_cerebral_va_ap.png``, ``gallery_cerebral_va_lateral.png``: a selective left vertebral injection
  (``injection=VA_L``), AP and lateral, aimed at the posterior fossa: the basilar and posterior cerebral arteries,
  both superior and anterior inferior cerebellar arteries and the left posterior inferior one over the cerebellum;
* ``gallery_lsystem_chest.png``: ``--vessels lsystem`` in the builtin chest CT's body;
* ``gallery_cerebral_catheter.png``: a selective left ICA injection (``cow``, ``injection=ICA_L``) through
  a 5 F catheter in the left common carotid, AP, on the same head (the ``dsa`` command's scene spec and picture,
  with the template parameter set here).

Run (about 10 minutes on 2 CPU cores; finished pictures are skipped on a rerun)::

    python experiments/vessel_gallery.py --out out/gallery
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"
#: The head of the cerebral pictures.
HEAD = "builtin:head-phantom-1"

#: name -> (dsa arguments, {view png: gallery png})
RUNS = {
    "cerebral": (["--vessels", "cow", "--seed", "1", "--alpha", "0,90"],
                 {"view_000.png": "gallery_cerebral_ap.png", "view_001.png": "gallery_cerebral_lateral.png"}),
    "sequence": (["--vessels", "cow", "--seed", "1", "--alpha", "0", "--frames", "4"],
                 {"view_000.png": "gallery_cerebral_sequence.png"}),
    "sequence_lateral": (["--vessels", "cow", "--seed", "1", "--alpha", "90", "--frames", "4"],
                         {"view_000.png": "gallery_cerebral_sequence_lateral.png"}),
    "coronary": (["--ct", "builtin:chest-ct", "--vessels", "coronary", "--seed", "2", "--alpha", "30,-40"],
                 {"view_000.png": "gallery_coronary_rao.png", "view_001.png": "gallery_coronary_lao.png"}),
    "coronary_no_labels": (["--ct", "builtin:chest-ct", "--labels", "none", "--vessels", "coronary",
                            "--seed", "2", "--alpha", "-40"],
                           {"view_000.png": "gallery_coronary_no_labels.png"}),
    "external_carotid": (["--vessels", "cow", "--seed", "1", "--alpha", "90", "--isocenter", "0,0,5",
                          "-p", "injection=ECA_L"],  # the face and neck in the field too
                         {"view_000.png": "gallery_cerebral_eca_lateral.png"}),
    "internal_carotid": (["--vessels", "cow", "--seed", "1", "--alpha", "90", "-p", "injection=ICA_L"],
                         {"view_000.png": "gallery_cerebral_ica_lateral.png"}),
    "vertebral": (["--vessels", "cow", "--seed", "1", "--alpha", "0,90", "--isocenter", "0,30,-5",
                   "-p", "injection=VA_L"],  # aimed at the posterior fossa
                  {"view_000.png": "gallery_cerebral_va_ap.png", "view_001.png": "gallery_cerebral_va_lateral.png"}),
    "lsystem": (["--ct", "builtin:chest-ct", "--vessels", "lsystem", "--seed", "3"],
                {"view_000.png": "gallery_lsystem_chest.png"}),
}


def catheter_picture(out: Path) -> None:
    """``gallery_cerebral_catheter.png``: ``dsa --vessels cow --catheter`` with ``injection=ICA_L``, AP."""
    from dataclasses import replace

    import numpy as np

    from ddsa_sim.cli.dsa import DEFAULT_DETECTOR, DEFAULT_PIXEL_MM, save_strip, scene_spec
    from ddsa_sim.cli.options import parse_detector
    from ddsa_sim.geometry import CArm
    from ddsa_sim.scene import build_scene, render_frames

    spec = scene_spec(HEAD, "cow", 1, catheter=True, catheter_french=5.0)
    spec = replace(spec, vessels=replace(spec.vessels, params={"injection": "ICA_L"}))
    scene = build_scene(spec)
    rows, cols = parse_detector(DEFAULT_DETECTOR)
    carm = CArm(isocenter_mm=(5.0, -10.0, -60.0), sensor_height=rows, sensor_width=cols, pixel_mm=DEFAULT_PIXEL_MM)
    frames = render_frames(scene, carm, np.random.default_rng([1, 0]))
    save_strip(frames, out, f"{HEAD} + cow injection=ICA_L, 5 F catheter  alpha=0 beta=0  noise=on  scatter=on")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/gallery"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (dsa_args, pictures) in tqdm(RUNS.items(), desc="gallery"):
        if all((IMG / g).exists() for g in pictures.values()):
            continue
        out = args.out / name
        ct = [] if "--ct" in dsa_args else ["--ct", HEAD]
        subprocess.run(["ddsa-sim", "dsa", *ct, *dsa_args, "-o", str(out), "--overwrite"], check=True)  # redone
        for view, gallery in pictures.items():
            shutil.copyfile(out / view, IMG / gallery)
    if not (IMG / "gallery_cerebral_catheter.png").exists():
        catheter_picture(IMG / "gallery_cerebral_catheter.png")


if __name__ == "__main__":
    main()
