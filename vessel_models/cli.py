"""Command line for vessel trees (mounted as ``ddsa-sim vessels``).

Commands
--------
generate   seeded procedural tree -> ``tree.vtp`` + ``tree.json`` + ``tree.png``
voxelize   tree -> lumen-fraction NIfTI (own grid at ``--spacing-mm`` or ``--like CT``)
stats      tree -> one JSON object of morphometrics on stdout
from-mask  NIfTI label map -> centreline tree (skeleton + distance transform)
gan-data   procedural trees -> a folder of label volumes (training data for the GANs)
gan-train  train a 3D vessel GAN (WGAN-GP or StyleGAN) on a folder of label volumes
gan-sample checkpoint -> label volumes (NIfTI), trees (VTP) and morphometrics (JSON)

World frame: LPS mm for trees; NIfTI files are RAS on disk and converted both ways.
Bad input prints one line ``error: ...`` on stderr and exits with status 2.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import typer

from vessel_models.io import atomic_output, claim_folder, clear_folder, json_safe, save_nifti
from vessel_models.tree import VesselInputError, VesselTree

__all__ = ["app", "tree_stats"]

app = typer.Typer(
    help="Vessel trees: generate procedural trees, voxelize them to iodine-fraction volumes, "
    "print morphometrics, extract centrelines from segmentations.",
    no_args_is_help=True,
    add_completion=False,
)

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _one_line_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user-input errors into ``error: ...`` on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BrokenPipeError:  # the reader of our output left (``| head``): click ends quietly
            raise
        except (VesselInputError, OSError, MemoryError) as exc:
            msg = " ".join(str(exc).split()) or type(exc).__name__
            if isinstance(exc, MemoryError):
                msg = f"out of memory ({msg}); use a coarser spacing or a smaller grid"
            typer.echo(f"error: {msg}", err=True)
            raise typer.Exit(code=2) from None

    return wrapper


# ---------------------------------------------------------------------------- helpers
OVERWRITE = typer.Option(False, "--overwrite", help="Replace existing output files.")
OVERWRITE_FOLDER = typer.Option(False, "--overwrite", help="Delete what the output folder holds first.")


def _refuse_existing(paths: list[Path], overwrite: bool, inputs: tuple[Path | None, ...] = ()) -> None:
    """No command replaces an existing output unless asked (``--overwrite``), nor ever one of its inputs."""
    for path in paths:
        if any(given is not None and path.resolve() == Path(given).resolve() for given in inputs):
            raise VesselInputError(f"{path}: is an input; choose another output")
        if path.exists() and not overwrite:
            raise VesselInputError(f"{path}: exists; choose another output, or --overwrite to replace it")


def _triple(a: np.ndarray) -> dict:
    a = np.asarray(a, dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return {"min": None, "median": None, "max": None}
    return {"min": float(a.min()), "median": float(np.median(a)), "max": float(a.max())}


def tree_stats(tree: VesselTree) -> dict:
    """Morphometrics of a tree as one JSON-friendly dict.

    Parameters
    ----------
    tree : VesselTree
        Tree in mm.

    Returns
    -------
    dict
        ``n_nodes``, ``n_branches`` (= ``n_segments``: vessel segments between bifurcations),
        ``n_bifurcations``, ``total_length_mm``,
        ``murray_residual`` (mean absolute relative residual ``(sum r_c^3 - r_p^3) / r_p^3``
        over bifurcations; None without bifurcations), ``murray_residual_max_abs``,
        ``radius_mm`` (min/median/max over nodes), ``tortuosity`` (path/chord per branch:
        min/median/max), ``tortuosity_dm`` (its median and 90th percentile),
        ``bifurcation_angle_deg`` (median angle of the two largest children to the parent),
        ``named_segments`` for labelled trees (:func:`vessel_models.morphometrics.named_segments`),
        plus every entry of :func:`vessel_models.morphometrics.summary`.
    """
    from vessel_models import morphometrics as mm

    res = np.abs(mm.murray_residuals(tree, 3.0))
    tort = mm.tortuosity(tree)
    tort = tort[np.isfinite(tort)]
    angles = np.array([a for b in mm.bifurcation_angles(tree) for a in b["angles_deg"][:2]], dtype=np.float64)
    out: dict[str, Any] = {
        "n_nodes": tree.n_nodes,
        "n_branches": int(mm.branch_count(tree)),
        "n_segments": int(mm.branch_count(tree)),  # the name for the same count
        "n_bifurcations": int(mm.bifurcation_count(tree)),
        "total_length_mm": float(tree.total_length_mm()),
        "murray_residual": float(res.mean()) if res.size else None,
        "murray_residual_max_abs": float(res.max()) if res.size else None,
        # a template's virtual connectors (1 um, joining two arteries' trees) are no vessel
        "radius_mm": _triple(tree.radii_mm[tree.vessel_nodes()]),
        "tortuosity": _triple(tort),
        "tortuosity_dm": {"median": float(np.median(tort)) if tort.size else None,
                          "p90": float(np.percentile(tort, 90)) if tort.size else None},
        "bifurcation_angle_deg": {"median": float(np.nanmedian(angles)) if angles.size else None},
    }
    named = mm.named_segments(tree)
    if named:
        out["named_segments"] = named
    try:
        extra = mm.summary(tree)
    except Exception:  # noqa: BLE001  # pragma: no cover - optional extras must not break the core stats
        extra = {}
    for k, v in extra.items():
        if k not in _SUMMARY_TWINS:  # one name per number
            out.setdefault(k, v)
    return json_safe(out)


#: :func:`vessel_models.morphometrics.summary` entries that :func:`tree_stats` gives under its own names
_SUMMARY_TWINS = ("branch_count", "bifurcation_count", "murray_residual_abs_max")


def _like_grid(path: Path) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Affine (voxel -> LPS mm) and shape of a NIfTI file, from its header only."""
    import nibabel as nib

    if not path.is_file():
        raise VesselInputError(f"--like file not found: {path}")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
        raise VesselInputError(f"cannot read --like file {path}: {exc}") from None
    shape = tuple(int(s) for s in img.shape[:3])
    if len(shape) != 3:
        raise VesselInputError(f"--like file {path} is not a 3-D volume (shape {img.shape})")
    return _RAS_TO_LPS @ np.asarray(img.affine, dtype=np.float64), shape  # type: ignore[return-value]


def _load(path: Path) -> VesselTree:
    from vessel_models.io import load_tree

    if not path.is_file():
        raise VesselInputError(f"tree file not found: {path}")
    return load_tree(path)


# ---------------------------------------------------------------------------- commands
@app.command()
@_one_line_errors
def generate(
    model: str = typer.Option(..., "--model", "-m", help="lsystem | cow | coronary | colonize"),
    seed: int = typer.Option(0, "--seed", "-s", help="Random seed (>= 0); same seed, same tree."),
    param: list[str] | None = typer.Option(None, "--param", "-p", help="Model parameter k=v (repeatable)."),
    output: Path = typer.Option(..., "--output", "-o", help="Tree file (.vtp or .json)."),
    png: bool = typer.Option(True, "--png/--no-png", help="Also render a PNG picture beside it."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Generate a seeded procedural tree; writes TREE.vtp, TREE.json and TREE.png."""
    from vessel_models.generators import GENERATORS, parse_params
    from vessel_models.generators import generate as gen
    from vessel_models.io import save_json, save_vtp

    if model not in GENERATORS:
        raise VesselInputError(f"unknown model {model!r}; choose one of {', '.join(sorted(GENERATORS))}")
    suffix = output.suffix.lower()
    if suffix not in (".vtp", ".json"):
        raise VesselInputError(f"output must end in .vtp or .json, got {output.name}")
    vtp, js = output.with_suffix(".vtp"), output.with_suffix(".json")
    _refuse_existing([vtp, js] + ([output.with_suffix(".png")] if png else []), overwrite)
    tree = gen(model, seed, **parse_params(param or []))
    output.parent.mkdir(parents=True, exist_ok=True)
    save_vtp(tree, vtp)
    save_json(tree, js)
    written = [str(vtp), str(js)]
    if png:
        from vessel_models.render import render_tree_png

        pic = output.with_suffix(".png")
        render_tree_png(tree, pic, title=f"{model} seed {seed}")
        written.append(str(pic))
    typer.echo(
        f"{model} seed {seed}: {tree.n_nodes} nodes, {tree.total_length_mm():.1f} mm -> " + ", ".join(written)
    )


@app.command()
@_one_line_errors
def voxelize(
    tree_path: Path = typer.Argument(..., metavar="TREE", help="Tree file (.vtp or .json), LPS mm."),
    output: Path = typer.Option(..., "--output", "-o", help="Output NIfTI (.nii.gz)."),
    spacing_mm: float = typer.Option(0.2, "--spacing-mm", help="Voxel size of the grid around the tree, mm."),
    margin_mm: float = typer.Option(1.0, "--margin-mm", help="Space around the tree's bounds, mm."),
    like: Path | None = typer.Option(None, "--like", help="Use this NIfTI's exact grid (e.g. the CT)."),
    supersample: int = typer.Option(4, "--supersample", help="Sub-samples per axis in boundary voxels."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Voxelize a tree to a lumen-fraction volume (0..1, float32 NIfTI)."""
    from vessel_models.voxelize import grid_around_tree, voxelize_tree

    _refuse_existing([output], overwrite, inputs=(tree_path, like))
    tree = _load(tree_path)
    if like is not None:
        affine, shape = _like_grid(like)
    else:
        affine, shape = grid_around_tree(tree, spacing_mm, margin_mm)
    vol = voxelize_tree(tree, affine, shape, supersample=supersample)
    save_nifti(vol, affine, output)
    vox_mm3 = abs(float(np.linalg.det(affine[:3, :3])))
    lumen = float(vol.sum(dtype=np.float64)) * vox_mm3
    typer.echo(f"{output}: grid {shape[0]}x{shape[1]}x{shape[2]}, lumen volume {lumen:.1f} mm^3")
    if lumen == 0.0:
        typer.echo("warning: the tree does not intersect the grid (all voxels are 0)", err=True)
    elif like is not None:
        ijk = (tree.positions_mm - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
        outside = int(np.count_nonzero(np.any((ijk < -0.5) | (ijk > np.asarray(shape) - 0.5), axis=1)))
        if outside:
            typer.echo(f"warning: {outside} of {tree.n_nodes} tree nodes lie outside the --like grid: the lumen "
                       "there is cut off", err=True)


@app.command()
@_one_line_errors
def stats(
    tree_path: Path = typer.Argument(..., metavar="TREE", help="Tree file (.vtp or .json)."),
    as_json: bool = typer.Option(True, "--json/--text", help="One JSON object (default) or key: value lines."),
) -> None:
    """Print morphometrics (segments, lengths, radii, Murray, tortuosity, angles, named segments)."""
    tree = _load(tree_path)
    stats_ = tree_stats(tree)
    if as_json:
        typer.echo(json.dumps(stats_, sort_keys=True))
        return
    for key, value in sorted(stats_.items()):
        typer.echo(f"{key}: {json.dumps(value, sort_keys=True)}")


@app.command("from-mask")
@_one_line_errors
def from_mask(
    mask: Path = typer.Argument(..., help="NIfTI label/mask volume (RAS on disk)."),
    output: Path = typer.Option(..., "--output", "-o", help="Tree file (.vtp or .json), LPS mm."),
    labels: str | None = typer.Option(None, "--labels", help="Comma-separated label values (default: all > 0)."),
    isotropic_mm: float | None = typer.Option(None, "--isotropic-mm", help="Resample to this voxel size first."),
    node_spacing_mm: float | None = typer.Option(None, "--node-spacing-mm", help="Node spacing along branches."),
    root: str | None = typer.Option(None, "--root", help="X,Y,Z (LPS mm): root the tree at the skeleton point "
                                    "nearest it (default: the widest end the volume's border does not cut)."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Extract a centreline tree with radii from a segmentation (skeleton; cross-section radii)."""
    from vessel_models.io import save_tree
    from vessel_models.segmentation import mask_to_tree

    if output.suffix.lower() not in (".vtp", ".json"):  # before the extraction, which takes seconds
        raise VesselInputError(f"output must end in .vtp or .json, got {output.name}")
    if node_spacing_mm is not None and not (np.isfinite(node_spacing_mm) and node_spacing_mm > 0):
        raise VesselInputError(f"--node-spacing-mm must be > 0, got {node_spacing_mm:g}")
    root_mm = None
    if root is not None:
        try:
            root_mm = np.array([float(v) for v in root.split(",")])
        except ValueError:
            root_mm = np.zeros(0)
        if root_mm.shape != (3,) or not np.all(np.isfinite(root_mm)):
            raise VesselInputError(f"--root must be X,Y,Z in mm, got {root!r}")
    _refuse_existing([output], overwrite, inputs=(mask,))
    labs = None
    if labels:
        try:
            labs = [int(v) for v in labels.split(",")]  # an empty item is a typo, not nothing
        except ValueError:
            raise VesselInputError(f"--labels must be comma-separated integers, got {labels!r}") from None
    tree = mask_to_tree(mask, labels=labs, isotropic_mm=isotropic_mm, node_spacing_mm=node_spacing_mm, root_mm=root_mm)
    output.parent.mkdir(parents=True, exist_ok=True)
    save_tree(tree, output)
    typer.echo(f"{output}: {tree.n_nodes} nodes, {tree.total_length_mm():.1f} mm")


@app.command("gan-data")
@_one_line_errors
def gan_data(
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the label volumes (.nii.gz)."),
    n: int = typer.Option(64, "-n", help="Number of volumes."),
    seed: int = typer.Option(0, "--seed", "-s", help="First tree seed (volume t uses seed + t)."),
    shape: int = typer.Option(32, "--shape", help="Grid side (voxels)."),
    spacing_mm: float = typer.Option(1.5, "--spacing-mm", help="Voxel size, mm."),
    model: str = typer.Option("lsystem", "--model", "-m", help="Procedural generator."),
    param: list[str] | None = typer.Option(None, "--param", "-p", help="Generator parameter k=v (repeatable)."),
    overwrite: bool = OVERWRITE_FOLDER,
) -> None:
    """Voxelize seeded procedural trees into label volumes centred on each tree."""
    from tqdm import tqdm

    from vessel_models.gan.data import procedural_volumes, save_label_volume
    from vessel_models.generators import parse_params

    if n < 1:
        raise VesselInputError(f"-n: must be >= 1, got {n}")
    if not (np.isfinite(spacing_mm) and spacing_mm > 0):
        raise VesselInputError(f"--spacing-mm: must be a voxel size > 0 mm, got {spacing_mm:g}")
    if shape < 1:
        raise VesselInputError(f"--shape: must be >= 1 voxel, got {shape}")
    params = parse_params(param or [])
    claim_folder(output, overwrite)  # a training folder of one generator's volumes, not two runs' mixed
    if overwrite:
        clear_folder(output)
    for t in tqdm(range(n), desc="voxelizing"):
        (vol,) = procedural_volumes(1, (shape,) * 3, spacing_mm, seed + t, model, params)
        save_label_volume(vol, spacing_mm, output / f"{model}_{seed + t:05d}.nii.gz")
    typer.echo(f"{output}: {n} label volumes {shape}^3 at {spacing_mm} mm")


@app.command("gan-train")
@_one_line_errors
def gan_train(
    config: Path = typer.Argument(..., help="GAN config (YAML)."),
    data: Path = typer.Option(..., "--data", help="Folder of NIfTI vessel label volumes."),
    output: Path = typer.Option(..., "--output", "-o", help="Run folder (best.pt, last.pt, tb/)."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Total generator steps (default: config)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from RUN/last.pt."),
    val_data: Path | None = typer.Option(None, "--val-data", help="Folder of held-out label volumes that pick "
                                         "best.pt (default: data.val_fraction of --data; give it again with "
                                         "--resume)."),
    overwrite: bool = OVERWRITE_FOLDER,
) -> None:
    """Train a 3D vessel GAN (single process, or one process per device under torchrun)."""
    from vessel_models.gan.config import load_gan_config
    from vessel_models.gan.data import load_label_folder
    from vessel_models.gan.train import TrainingInterrupted, resume_checkpoint, train_gan

    if resume and overwrite:
        raise VesselInputError("--resume and --overwrite: give one (continue the run, or start it again)")
    resume_checkpoint(output, resume)  # before anything is read or written
    cfg = load_gan_config(config)
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun: rank 0 alone claims (and clears) the run folder
        claim_folder(output, overwrite, resume, inputs=(config, data, val_data))
    labels = list(cfg.data.labels) or None
    volumes = load_label_folder(data, cfg.data.spacing_mm, labels)
    held_out = None if val_data is None else load_label_folder(val_data, cfg.data.spacing_mm, labels, "--val-data")
    if overwrite and int(os.environ.get("RANK", "0")) == 0:  # the inputs read: the old run goes now, not before
        clear_folder(output)
    try:
        result = train_gan(cfg, volumes, output, max_steps=max_steps, resume=resume, val_volumes=held_out)
    except TrainingInterrupted as stop:
        if int(os.environ.get("RANK", "0")) == 0:
            again = ["--resume"] + (["--val-data", str(val_data)] if val_data is not None else []) + (
                ["--max-steps", str(max_steps)] if max_steps is not None else [])
            typer.echo(f"error: {_interrupted_line(stop)}: continue with: ddsa-sim vessels gan-train "
                       f"{shlex.join([str(config), '--data', str(data), '-o', str(output), *again])}"
                       if stop.saved_step is not None else f"error: {_interrupted_line(stop)}", err=True)
        raise typer.Exit(128 + stop.signum) from None
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(f"{output}: {result.step} steps in {result.wall_s:.0f} s ({result.precision}), "
                   f"best w1_median {result.best_score:.3f}")


def _interrupted_line(stop: Any) -> str:
    """What an interrupted ``gan-train`` kept (``stop``: a :class:`~vessel_models.gan.train.TrainingInterrupted`)."""
    import signal

    name = signal.Signals(stop.signum).name
    if stop.saved_step == stop.step:
        return f"interrupted by {name} after step {stop.step}; saved it to {stop.path}"
    if stop.saved_step is None:
        return (f"interrupted by {name} again inside step {stop.step + 1}: nothing is saved (no checkpoint yet); "
                "run it again with --overwrite")
    return (f"interrupted by {name} again inside step {stop.step + 1}: steps after {stop.saved_step} are lost, "
            f"{stop.path} holds step {stop.saved_step}")


@app.command("gan-sample")
@_one_line_errors
def gan_sample(
    checkpoint: Path = typer.Argument(..., help="Checkpoint (RUN/best.pt)."),
    n: int = typer.Option(4, "-n", help="Number of volumes."),
    seed: int = typer.Option(0, "--seed", "-s", help="Seed; same seed, same volumes."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder."),
    truncation: float = typer.Option(1.0, "--truncation", help="Truncation / temperature psi in (0, 2]."),
    threshold: float = typer.Option(0.5, "--threshold", help="Probability threshold of a vessel voxel."),
    trees: bool = typer.Option(True, "--trees/--no-trees", help="Also extract centreline trees (VTP + stats)."),
    overwrite: bool = OVERWRITE_FOLDER,
) -> None:
    """Sample label volumes (NIfTI with spacing) and their centreline trees with morphometrics."""
    from vessel_models.gan.checkpoint import load_generator
    from vessel_models.gan.data import centred_affine, save_label_volume
    from vessel_models.gan.sample import sample_labels
    from vessel_models.io import save_vtp
    from vessel_models.segmentation import mask_to_tree

    if n < 1:
        raise VesselInputError(f"-n: must be >= 1, got {n}")
    generator, cfg = load_generator(checkpoint)
    claim_folder(output, overwrite, inputs=(checkpoint,))  # no stale sample of a larger -n beside the new ones
    if overwrite:
        clear_folder(output)
    labels = sample_labels(generator, n, seed, truncation, threshold)
    spacing = cfg.data.spacing_mm
    for t, label in enumerate(labels):
        stem = output / f"sample_{t:03d}"
        save_label_volume(label, spacing, stem.with_suffix(".nii.gz"))
        line = f"{stem}.nii.gz: {int(label.sum())} vessel voxels"
        if trees:
            try:
                tree = mask_to_tree(label, affine=centred_affine(label.shape, spacing))
            except VesselInputError as exc:
                line += f"; no tree ({exc})"
            else:
                save_vtp(tree, stem.with_suffix(".vtp"))
                with atomic_output(stem.with_suffix(".json")) as tmp:
                    tmp.write_text(json.dumps(tree_stats(tree), sort_keys=True, indent=1))
                line += f"; tree {tree.n_nodes} nodes, {tree.total_length_mm():.1f} mm"
        typer.echo(line)


def main() -> None:  # pragma: no cover - thin entry point
    """Run the vessels command line (``python -m vessel_models.cli``)."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
