"""Inspect a dataset store: counts per split, summary statistics, vessel conspicuity, checksum
verification; one sample as a picture."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from scipy.ndimage import distance_transform_edt, gaussian_filter

from ddsa_sim import InputError
from ddsa_sim.export.format import (
    FRAMES_ATTR,
    IMAGE_ARRAYS,
    META_ARRAYS,
    META_GROUP,
    SPLITS,
    exposed_field,
    image_sample_shape,
    meta_sample_shape,
    sample_checksum,
    store_frames,
)
from ddsa_sim.export.store import open_store, read_meta
from ddsa_sim.geometry.pixel_scale import median_pixel_spacing

__all__ = ["CLUTTER_SIGMA_PX", "FIELD_MARGIN_SIGMAS", "PICTURE_SUFFIXES", "WRITTEN_META", "InspectReport",
           "inspect_store", "sample_png", "vessel_conspicuity"]

#: anatomy clutter is the anatomy less its Gaussian blur of this sigma (pixels): structure finer than about
#: 2.5 sigma = 10 pixels, the scale of the vessels (1-5 mm on 0.6-1.2 mm pixels), what a vessel is confused with
CLUTTER_SIGMA_PX = 4.0
#: a collimated frame's clutter is taken this many sigma inside its field, where the blur of the field's edge
#: (a step to the unexposed border) has fallen below 1e-4 of the step (normal tail beyond 4 sigma: 3e-5)
FIELD_MARGIN_SIGMAS = 4.0
#: picture files ``--png-out`` may name (matplotlib writes each, in the format its suffix names)
PICTURE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".pdf", ".svg")
#: meta arrays of which no written value is the fill value ("" or 0): a complete sample without its chunk
#: file of one of them has lost it (Zarr reads a missing chunk as the fill value, silently). The others
#: (pose angles, ``grid``, ``collimation``, ...) may be written as 0, and Zarr then leaves no chunk file.
WRITTEN_META: tuple[str, ...] = ("checksum", "split", "ct_id", "vessel_id", "params_json", "projection_matrix",
                                 "kvp", "iodine_mg_per_ml")
#: meta arrays :func:`inspect_store` decodes for every sample
_READ_META: tuple[str, ...] = ("split", "ct_id", "checksum", "projection_matrix", "isocenter_mm", "collimation")


def vessel_conspicuity(
    contrast: np.ndarray,
    contrast_clean: np.ndarray,
    dsa_target: np.ndarray,
    vessel_mask: np.ndarray,
    field: np.ndarray | None = None,
) -> tuple[float, float] | None:
    """How visible one image's vessels are in its contrast frame: ``(signal / clutter, signal / noise)``.

    Signal: the median iodine line integral on the vessel pixels (``dsa_target``, -ln units). Clutter: the
    standard deviation of the anatomy (``contrast_clean - dsa_target``) less its Gaussian blur
    (:data:`CLUTTER_SIGMA_PX`), i.e. the anatomy's structure at the vessels' scale. Noise: the standard
    deviation of ``contrast - contrast_clean``. A network that extracts the vessels from one frame must tell
    them from the clutter and the noise; below 1 they are fainter than either.

    Parameters
    ----------
    contrast, contrast_clean, dsa_target, vessel_mask
        ``(H, W)`` arrays of one sample (a sequence: one frame).
    field
        ``(H, W)`` bool, the exposed field of a collimated frame (:func:`ddsa_sim.export.format.exposed_field`);
        clutter is then taken :data:`FIELD_MARGIN_SIGMAS` sigma inside it and noise within it. None: the
        whole image.

    Returns
    -------
    tuple of float, or None
        None when the image has no vessel pixel, or no pixel that far inside its field. Either ratio is
        ``inf`` where its denominator is 0.
    """
    vessel = np.asarray(vessel_mask) > 0
    field = np.ones(vessel.shape, dtype=bool) if field is None else np.asarray(field, dtype=bool)
    inner = field
    if not field.all():
        inner = distance_transform_edt(field) > FIELD_MARGIN_SIGMAS * CLUTTER_SIGMA_PX
    if not vessel.any() or not inner.any():
        return None
    target = np.asarray(dsa_target, dtype=np.float64)
    anatomy = np.asarray(contrast_clean, dtype=np.float64) - target
    clutter = float(np.std((anatomy - gaussian_filter(anatomy, CLUTTER_SIGMA_PX))[inner]))
    noise = float(np.std((np.asarray(contrast, dtype=np.float64) - np.asarray(contrast_clean, dtype=np.float64))[field]))
    signal = float(np.median(target[vessel]))
    return (signal / clutter if clutter > 0 else np.inf, signal / noise if noise > 0 else np.inf)


@dataclass
class InspectReport:
    """Result of :func:`inspect_store`. ``corrupted``: (index, reason) of samples failing verification."""

    path: Path
    n_samples: int
    n_complete: int
    image_shape: tuple[int, int]
    software_version: str
    format_version: int
    frames: int
    samples_per_split: dict[str, int]
    cts_per_split: dict[str, int]
    stats: dict[str, dict[str, float]]
    #: per split: median over its images of :func:`vessel_conspicuity` (``signal_to_clutter``,
    #: ``signal_to_noise``) and the number of images with vessels (``n_images``)
    conspicuity: dict[str, dict[str, float]] = field(default_factory=dict)
    corrupted: list[tuple[int, str]] = field(default_factory=list)
    incomplete: list[int] = field(default_factory=list)
    #: median pixel spacing at the isocenter of the complete samples, mm (None: images without a C-arm)
    pixel_mm: float | None = None
    #: root attributes that disagree with the arrays (``n_samples``, ``image_shape``, ``frames``), one line each
    header: list[str] = field(default_factory=list)
    #: (index, reason) of incomplete samples whose images and checksum are written and agree: their
    #: ``complete`` flag was lost (its chunk deleted or set to 0), or the export stopped just before writing it
    flag_lost: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.corrupted and not self.header

    def format(self) -> str:
        """Human-readable summary."""
        lines = [f"store      {self.path}",
                 f"version    ddsa-sim {self.software_version}",
                 f"format     {self.format_version}",
                 f"samples    {self.n_complete}/{self.n_samples} complete, images "
                 + f"{self.image_shape[0]}x{self.image_shape[1]}"
                 + (f" of {self.pixel_mm:.4g} mm at the isocenter" if self.pixel_mm is not None else "")
                 + (f", sequences of {self.frames} frames" if self.frames else "")]
        for s in SPLITS:
            lines.append(f"  {s:<6} {self.samples_per_split.get(s, 0):>8} samples  {self.cts_per_split.get(s, 0):>5} CTs")
        lines.append(f"{'array':<20}{'mean':>12}{'std':>12}{'min':>12}{'max':>12}")
        for name, st in self.stats.items():
            lines.append(f"{name:<20}{st['mean']:>12.4g}{st['std']:>12.4g}{st['min']:>12.4g}{st['max']:>12.4g}")
        if self.conspicuity:
            lines.append(f"vessels    median iodine on vessel pixels over anatomy finer than {CLUTTER_SIGMA_PX:g} px "
                         "(clutter) and over noise, median of the images")
            for s, c in self.conspicuity.items():
                lines.append(f"  {s:<6} signal/clutter {c['signal_to_clutter']:>6.2f}  signal/noise "
                             f"{c['signal_to_noise']:>7.2f}  ({c['n_images']} images)")
        lines.extend(f"HEADER     {line}" for line in self.header)
        if self.incomplete:
            lines.append(f"INCOMPLETE {len(self.incomplete)} sample(s) (e.g. {self.incomplete[:5]}): "
                         "run `ddsa-sim export ... --resume`")
            lines.extend(f"  #{i}: {why}" for i, why in self.flag_lost[:20])
        if self.corrupted:
            lines.append(f"CORRUPTED  {len(self.corrupted)} sample(s):")
            lines.extend(f"  #{i}: {why}" for i, why in self.corrupted[:20])
        else:
            lines.append(f"verified   {self.n_complete} sample checksum(s) OK")
        return "\n".join(lines)


def _chunk(arr: zarr.Array, index: int) -> str:
    """Path of the chunk file of sample ``index`` of ``arr`` in its store (``mask/c/2/0/0``): one chunk per sample."""
    return f"{arr.path}/{arr.metadata.encode_chunk_key((int(index),) + (0,) * (arr.ndim - 1))}"


def _missing_chunks(path: Path, arrays: Mapping[str, zarr.Array], index: int) -> list[str]:
    """The chunk files of sample ``index`` of ``arrays`` that do not exist under the store folder ``path``."""
    return [key for arr in arrays.values() if not (path / (key := _chunk(arr, index))).exists()]


def _layout(root: zarr.Group, path: Path) -> tuple[int, tuple[int, int], int, list[str]]:
    """N, ``(H, W)`` and T as the arrays hold them, and a line for each root attribute saying otherwise.

    Raises
    ------
    InputError
        Arrays that disagree with each other (N of ``meta/complete``, the images of ``mask``, the frames
        of ``contrast``): the store cannot be read sample by sample.
    """
    n = int(root[META_GROUP]["complete"].shape[0])
    mask, contrast = root["mask"].shape, root["contrast"].shape
    h, w = (int(mask[-2]), int(mask[-1])) if len(mask) >= 2 else (0, 0)
    frames = int(contrast[1]) if len(contrast) == 4 else 0
    meta = root[META_GROUP]
    expected = {name: (n, *image_sample_shape(name, (h, w), frames)) for name in IMAGE_ARRAYS}
    expected.update({f"{META_GROUP}/{name}": (n, *meta_sample_shape(name, frames)) for name in meta.array_keys()
                     if name in META_ARRAYS})
    for name, shape in expected.items():
        if tuple(root[name].shape) != shape:
            raise InputError(f"{path}: array {name} is {tuple(root[name].shape)}, not {shape} as the other arrays "
                             f"say ({n} samples of {h}x{w} images{f', {frames} frames' if frames else ''}); "
                             "the store is damaged: export it again")
    attrs = root.attrs
    header = [f"attribute {key} is {attrs.get(key)!r}, the arrays hold {what}"
              for key, value, what in (("n_samples", n, f"{n} samples"), ("image_shape", [h, w], f"{h}x{w} images"))
              if attrs.get(key) != value]
    if store_frames(attrs) != frames:
        header.append(f"attribute {FRAMES_ATTR} is {attrs.get(FRAMES_ATTR)!r}, the arrays hold "
                      + (f"sequences of {frames} frames" if frames else "one frame per sample"))
    return n, (h, w), frames, header


def _read_images(arrays: Mapping[str, zarr.Array], index: int) -> tuple[dict[str, np.ndarray] | None, str]:
    """Sample ``index`` of every image array, or None and why (the chunk that cannot be decoded)."""
    out = {}
    for name, arr in arrays.items():
        try:
            out[name] = arr[int(index)]
        except Exception as exc:  # noqa: BLE001 - a codec's error on a damaged chunk, whatever its type
            return None, f"chunk {_chunk(arr, index)} unreadable ({exc.__class__.__name__})"
    return out, ""


def _checksum_problem(path: Path, arrays: Mapping[str, zarr.Array], index: int, images: Mapping[str, np.ndarray],
                      checksum: str) -> str:
    """"" when ``images`` hash to ``checksum``, else why not (naming image chunk files that are missing)."""
    if sample_checksum(images) == checksum:
        return ""
    missing = _missing_chunks(path, arrays, index)  # only for a failing sample: a sound store pays nothing
    return "checksum mismatch" + (f": chunk file(s) {', '.join(missing)} missing (Zarr read them as zeros)"
                                  if missing else "")


def _meta_damage(path: Path, meta: Mapping[str, zarr.Array], index: int, values: Mapping[str, Any],
                 unreadable: Mapping[str, str]) -> list[str]:
    """Why the metadata of complete sample ``index`` cannot be trusted ([] when it can).

    Parameters
    ----------
    meta
        The store's meta arrays by name.
    values
        The sample's decoded values of (some of) ``meta``.
    unreadable
        Name -> decoder error class of the sample's meta chunks that could not be decoded.
    """
    reasons = [f"chunk {_chunk(meta[name], index)} unreadable ({err})" for name, err in unreadable.items()]
    # stat calls only: the values of these arrays are not read here
    lost = [name for name in WRITTEN_META if name in meta and name not in unreadable
            and not (path / _chunk(meta[name], index)).exists()]
    reasons += [f"chunk file {_chunk(meta[name], index)} missing (Zarr read it as {meta[name].fill_value!r})"
                for name in lost]
    split = values.get("split")
    if split is not None and "split" not in lost and "split" not in unreadable and str(split) not in SPLITS:
        reasons.append(f"{META_GROUP}/split is {str(split)!r}, not one of {', '.join(SPLITS)}")
    return reasons


def _flag_lost(path: Path, complete: zarr.Array, images: Mapping[str, zarr.Array], index: int, checksum: str) -> str:
    """Why incomplete sample ``index`` looks written (images and checksum agree), "" when it does not."""
    if not checksum:  # the checksum is written after the images: without it the sample was never whole
        return ""
    arrays, _ = _read_images(images, index)
    if arrays is None or sample_checksum(arrays) != checksum:
        return ""
    key = _chunk(complete, index)
    flag = f"chunk file {key} missing (read as 0)" if not (path / key).exists() else f"{META_GROUP}/complete is 0"
    return (f"{flag}, yet its images and checksum are written and agree: the flag was lost (deleted or set to 0), "
            "or the export stopped just before writing it")


def inspect_store(path: str | Path, verify: bool = True) -> InspectReport:
    """Read every complete sample once: statistics, and (``verify``) its checksum.

    Memory: one sample at a time. Damage is reported, never raised: a chunk that cannot be decoded, a
    checksum that does not match, a complete sample lacking the chunk file of a :data:`WRITTEN_META`
    array (or with a split that is none of :data:`SPLITS`), an undecodable ``complete`` flag, and root
    attributes that disagree with the arrays (:attr:`InspectReport.header`). With ``verify``, an
    incomplete sample whose images and checksum agree is named too (:attr:`InspectReport.flag_lost`).

    Raises
    ------
    InputError
        Not a readable store (:func:`~ddsa_sim.export.store.open_store`), or arrays whose shapes disagree.
    """
    path = Path(path)
    root = open_store(path)
    n, image_shape, frames, header = _layout(root, path)
    group = root[META_GROUP]
    meta = {name: group[name] for name in group.array_keys() if name in META_ARRAYS}
    images = {name: root[name] for name in IMAGE_ARRAYS}  # opened once, not once per sample
    complete, bad_flag = read_meta(root, "complete")
    values, unreadable = {}, {}
    for name in (m for m in _READ_META if m in meta):
        values[name], unreadable[name] = read_meta(root, name)
    done = complete == 1
    damaged: dict[int, str] = {i: f"chunk {_chunk(meta['complete'], i)} unreadable ({err}): whether it is "
                                  "complete is unknown" for i, err in bad_flag.items()}
    for i in np.flatnonzero(done):
        reasons = _meta_damage(path, meta, int(i), {k: v[i] for k, v in values.items()},
                               {k: u[i] for k, u in unreadable.items() if i in u})
        if reasons:
            damaged[int(i)] = "; ".join(reasons)
    trusted = done & ~np.isin(np.arange(n), list(damaged))  # complete, with metadata to go by
    split = np.array([str(x) for x in values["split"]], dtype=object)
    ct_id = np.array([str(x) for x in values["ct_id"]], dtype=object)
    checksums = [str(x) for x in values["checksum"]]
    per_split = Counter(split[trusted].tolist())
    cts = {s: len(set(ct_id[trusted & (split == s)].tolist())) for s in SPLITS}
    acc = {name: [0.0, 0.0, np.inf, -np.inf, 0] for name in IMAGE_ARRAYS}  # sum, sumsq, min, max, n
    corrupted = dict(damaged)
    ratios: dict[str, list[tuple[float, float]]] = {}
    collimation = values.get("collimation")
    for i in np.flatnonzero(trusted):
        arrays, why = _read_images(images, int(i))
        if arrays is not None and verify:
            why = _checksum_problem(path, images, int(i), arrays, checksums[i])
        if why:
            corrupted[int(i)] = why
            continue
        for name, a in arrays.items():
            a64 = a.astype(np.float64)
            st = acc[name]
            st[0] += a64.sum()
            st[1] += (a64 * a64).sum()
            st[2] = min(st[2], float(a64.min()))
            st[3] = max(st[3], float(a64.max()))
            st[4] += a64.size
        shape = arrays["contrast"].shape[-2:]  # a sequence: every frame
        field = exposed_field(None if collimation is None else collimation[i], shape)
        frames_ = zip(*(arrays[k].reshape(-1, *shape) for k in ("contrast", "contrast_clean", "dsa_target",
                                                                 "vessel_mask")))
        ratios.setdefault(str(split[i]), []).extend(
            r for f in frames_ if (r := vessel_conspicuity(*f, field)) is not None)
    incomplete = [int(i) for i in np.flatnonzero(~done) if int(i) not in bad_flag]
    flag_lost = [(i, why) for i in incomplete
                 if verify and (why := _flag_lost(path, meta["complete"], images, i, checksums[i]))]
    conspicuity = {s: {"signal_to_clutter": float(np.median([r[0] for r in rs])),
                       "signal_to_noise": float(np.median([r[1] for r in rs])), "n_images": len(rs)}
                   for s in SPLITS if (rs := ratios.get(s))}
    stats = {}
    for name, (s, ss, lo, hi, k) in acc.items():
        mean = s / k if k else float("nan")
        stats[name] = {"mean": mean, "std": float(np.sqrt(max(ss / k - mean * mean, 0.0))) if k else float("nan"),
                       "min": lo if k else float("nan"), "max": hi if k else float("nan")}
    return InspectReport(path, n, int(done.sum()), image_shape, str(root.attrs.get("software_version")),
                         int(root.attrs["format_version"]), frames, dict(per_split), cts, stats, conspicuity,
                         sorted(corrupted.items()), incomplete,
                         median_pixel_spacing(values["projection_matrix"][trusted], values["isocenter_mm"][trusted]),
                         header, flag_lost)


def _sample_meta(meta: Mapping[str, zarr.Array], index: int, names: tuple[str, ...]) -> tuple[dict, dict]:
    """Sample ``index`` of the meta arrays ``names`` the store has: (values, name -> error class of those whose
    chunk cannot be decoded)."""
    values, unreadable = {}, {}
    for name in (m for m in names if m in meta):
        try:
            values[name] = meta[name][int(index)]
        except Exception as exc:  # noqa: BLE001 - a codec's error on a damaged chunk, whatever its type
            unreadable[name] = exc.__class__.__name__
    return values, unreadable


def sample_png(path: str | Path, index: int, out: str | Path) -> tuple[Path, Path]:
    """Write store sample ``index`` as a PNG (:func:`ddsa_sim.export.preview.write_grid`; all frames of a
    sequence: :func:`~ddsa_sim.export.preview.write_sequence_strip`) at ``out``, and its contrast
    frame (float32 ``-ln(I/I0)``, what ``ddsa-sim infer`` takes; a sequence's frames as a multi-page
    TIFF) as ``<out stem>_contrast.tif`` beside it; returns both paths.

    Raises
    ------
    InputError
        ``out`` not ending in one of :data:`PICTURE_SUFFIXES` (before the store is opened), no such
        sample, an incomplete one, or one that is damaged (a chunk that cannot be decoded or is missing,
        a checksum that does not match).
    """
    from ddsa_sim.export.preview import write_grid, write_sequence_strip
    from ddsa_sim.files import atomic_output

    out = Path(out)
    if out.suffix.lower() not in PICTURE_SUFFIXES:
        raise InputError(f"--png-out: {out}: not a picture file name; end it in {', '.join(PICTURE_SUFFIXES)}")
    path = Path(path)
    root = open_store(path)
    n, _, frames, _ = _layout(root, path)
    if not 0 <= index < n:
        raise InputError(f"--png: sample {index} is not in {path} (0..{n - 1})")
    group = root[META_GROUP]
    meta = {name: group[name] for name in group.array_keys() if name in META_ARRAYS}
    # what the picture reads too: a damaged chunk is said here, not raised from inside the plotting
    values, unreadable = _sample_meta(meta, index, ("complete", *_READ_META, "frame_times_s"))
    if "complete" in unreadable:
        raise InputError(f"{path}: sample {index} is corrupted (chunk {_chunk(meta['complete'], index)} unreadable "
                         f"({unreadable['complete']}))")
    if values["complete"] != 1:
        raise InputError(f"--png: sample {index} of {path} is incomplete (run `ddsa-sim export ... --resume`)")
    images = {name: root[name] for name in IMAGE_ARRAYS}
    reasons = _meta_damage(path, meta, index, values, unreadable)
    arrays, why = _read_images(images, index)
    if arrays is not None and not reasons:
        why = _checksum_problem(path, images, index, arrays, str(values["checksum"]))
    if reasons or why:
        raise InputError(f"{path}: sample {index} is corrupted ({'; '.join(reasons or [why])})")
    import tifffile

    frame = out.with_name(f"{out.stem}_contrast.tif")
    with atomic_output(out) as tmp:
        if frames:
            write_sequence_strip(root, index, tmp)
        else:
            write_grid(root, [index], tmp)
    with atomic_output(frame) as tmp:
        tifffile.imwrite(tmp, np.asarray(arrays["contrast"], dtype=np.float32), photometric="minisblack")
    return out, frame
