"""Inspect a dataset store: counts per split, summary statistics, vessel conspicuity, checksum
verification; one sample as a picture."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.ndimage import distance_transform_edt, gaussian_filter

from ddsa_sim import InputError
from ddsa_sim.export.format import IMAGE_ARRAYS, META_GROUP, SPLITS, exposed_field, sample_checksum, store_frames
from ddsa_sim.export.store import completed, open_store
from ddsa_sim.geometry.pixel_scale import median_pixel_spacing

__all__ = ["CLUTTER_SIGMA_PX", "FIELD_MARGIN_SIGMAS", "InspectReport", "inspect_store", "sample_png", "vessel_conspicuity"]

#: anatomy clutter is the anatomy less its Gaussian blur of this sigma (pixels): structure finer than about
#: 2.5 sigma = 10 pixels, the scale of the vessels (1-5 mm on 0.6-1.2 mm pixels), what a vessel is confused with
CLUTTER_SIGMA_PX = 4.0
#: a collimated frame's clutter is taken this many sigma inside its field, where the blur of the field's edge
#: (a step to the unexposed border) has fallen below 1e-4 of the step (normal tail beyond 4 sigma: 3e-5)
FIELD_MARGIN_SIGMAS = 4.0


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

    @property
    def ok(self) -> bool:
        return not self.corrupted

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
        if self.incomplete:
            lines.append(f"INCOMPLETE {len(self.incomplete)} sample(s) (e.g. {self.incomplete[:5]}): "
                         "run `ddsa-sim export ... --resume`")
        if self.corrupted:
            lines.append(f"CORRUPTED  {len(self.corrupted)} sample(s):")
            lines.extend(f"  #{i}: {why}" for i, why in self.corrupted[:20])
        else:
            lines.append(f"verified   {self.n_complete} sample checksum(s) OK")
        return "\n".join(lines)


def inspect_store(path: str | Path, verify: bool = True) -> InspectReport:
    """Read every complete sample once: statistics, and (``verify``) its checksum.

    Memory: one sample at a time. A chunk that cannot be decoded counts as corrupted.
    """
    path = Path(path)
    root = open_store(path)
    meta = root[META_GROUP]
    done = completed(root)
    split = np.array([str(x) for x in meta["split"][:]], dtype=object)
    ct_id = np.array([str(x) for x in meta["ct_id"][:]], dtype=object)
    checksums = [str(x) for x in meta["checksum"][:]]
    per_split = Counter(split[done].tolist())
    cts = {s: len(set(ct_id[done & (split == s)].tolist())) for s in SPLITS}
    acc = {name: [0.0, 0.0, np.inf, -np.inf, 0] for name in IMAGE_ARRAYS}  # sum, sumsq, min, max, n
    corrupted: list[tuple[int, str]] = []
    ratios: dict[str, list[tuple[float, float]]] = {}
    collimation = meta["collimation"][:] if "collimation" in meta else None
    for i in np.flatnonzero(done):
        try:
            arrays = {name: root[name][int(i)] for name in IMAGE_ARRAYS}
        except Exception as exc:  # undecodable chunk
            corrupted.append((int(i), f"unreadable chunk ({exc.__class__.__name__})"))
            continue
        if verify and sample_checksum(arrays) != checksums[i]:
            corrupted.append((int(i), "checksum mismatch"))
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
        frames = zip(*(arrays[k].reshape(-1, *shape) for k in ("contrast", "contrast_clean", "dsa_target",
                                                                "vessel_mask")))
        ratios.setdefault(str(split[i]), []).extend(
            r for f in frames if (r := vessel_conspicuity(*f, field)) is not None)
    conspicuity = {s: {"signal_to_clutter": float(np.median([r[0] for r in rs])),
                       "signal_to_noise": float(np.median([r[1] for r in rs])), "n_images": len(rs)}
                   for s in SPLITS if (rs := ratios.get(s))}
    stats = {}
    for name, (s, ss, lo, hi, n) in acc.items():
        mean = s / n if n else float("nan")
        stats[name] = {"mean": mean, "std": float(np.sqrt(max(ss / n - mean * mean, 0.0))) if n else float("nan"),
                       "min": lo if n else float("nan"), "max": hi if n else float("nan")}
    return InspectReport(path, int(done.size), int(done.sum()), tuple(root.attrs["image_shape"]),
                         str(root.attrs.get("software_version")), int(root.attrs["format_version"]),
                         store_frames(root.attrs), dict(per_split), cts, stats, conspicuity, corrupted,
                         np.flatnonzero(~done).tolist(),
                         median_pixel_spacing(meta["projection_matrix"][:][done], meta["isocenter_mm"][:][done]))


def sample_png(path: str | Path, index: int, out: str | Path) -> tuple[Path, Path]:
    """Write store sample ``index`` as a PNG (:func:`ddsa_sim.export.preview.write_grid`; all frames of a
    sequence: :func:`~ddsa_sim.export.preview.write_sequence_strip`) at ``out``, and its contrast
    frame (float32 ``-ln(I/I0)``, what ``ddsa-sim infer`` takes; a sequence's frames as a multi-page
    TIFF) as ``<out stem>_contrast.tif`` beside it; returns both paths.

    Raises
    ------
    InputError
        No such sample, an incomplete one, or one whose checksum does not match.
    """
    from ddsa_sim.export.preview import write_grid, write_sequence_strip
    from ddsa_sim.files import atomic_output

    root = open_store(path)
    done = completed(root)
    if not 0 <= index < done.size:
        raise InputError(f"--png: sample {index} is not in {path} (0..{done.size - 1})")
    if not done[index]:
        raise InputError(f"--png: sample {index} of {path} is incomplete (run `ddsa-sim export ... --resume`)")
    try:
        arrays = {name: root[name][index] for name in IMAGE_ARRAYS}
    except Exception as exc:  # noqa: BLE001 - a codec's error on a damaged chunk, whatever its type
        raise InputError(f"{path}: sample {index} is corrupted (unreadable chunk, {exc.__class__.__name__})") from None
    if sample_checksum(arrays) != str(root[META_GROUP]["checksum"][index]):
        raise InputError(f"{path}: sample {index} is corrupted (checksum mismatch)")
    import tifffile

    out = Path(out)
    frame = out.with_name(f"{out.stem}_contrast.tif")
    with atomic_output(out) as tmp:
        if store_frames(root.attrs):
            write_sequence_strip(root, index, tmp)
        else:
            write_grid(root, [index], tmp)
    with atomic_output(frame) as tmp:
        tifffile.imwrite(tmp, np.asarray(arrays["contrast"], dtype=np.float32), photometric="minisblack")
    return out, frame
