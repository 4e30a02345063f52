"""The dataset store format (``docs/store_format.md``): its one owner.

Names, dtypes, per-sample shapes, chunking, format name and version, and the sample checksum live
here and nowhere else. The writer (:mod:`ddsa_sim.export.store`) and every reader
(:mod:`ddsa_sim.training.data`, :mod:`ddsa_sim.export.inspect`, :mod:`ddsa_sim.export.preview`)
take them from this module. It imports numpy and hashlib only, so a reader (``training``) can use
it without pulling in zarr, the exporter, the scene, numba or torch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "COLLIMATION_META",
    "FORMAT",
    "FORMAT_VERSION",
    "FRAMES",
    "FRAMES_ATTR",
    "FRAME_ARRAYS",
    "IMAGE_ARRAYS",
    "IMAGE_DTYPES",
    "META_ARRAYS",
    "META_GROUP",
    "OPTIONAL_META_ARRAYS",
    "PSEUDO_PATIENT_SEPARATOR",
    "READABLE_VERSIONS",
    "SAMPLE_META_ARRAYS",
    "SPLITS",
    "SPLIT_COUNTS_ATTR",
    "V2_META_ARRAYS",
    "V3_META_ARRAYS",
    "exposed_field",
    "image_sample_shape",
    "meta_sample_shape",
    "sample_checksum",
    "sample_chunks",
    "source_ct_id",
    "store_frames",
]

#: root attribute ``format``: what a store is
FORMAT = "ddsa-sim-dataset"
#: root attribute ``format_version`` of what is written now
FORMAT_VERSION = 3
#: versions a reader accepts (version 1: no exposure meta arrays, see :data:`V2_META_ARRAYS`; versions
#: 1 and 2: no sequences and no frame times, see :data:`V3_META_ARRAYS`)
READABLE_VERSIONS = (1, 2, 3)
#: root attribute: contrast frames per sample, T. 0 (and absent, versions 1-2): one frame, images
#: ``(N, H, W)``; T >= 1: a sequence store, the :data:`FRAME_ARRAYS` are ``(N, T, H, W)``
FRAMES_ATTR = "frames"

#: image arrays at the root, shape (N, H, W), in checksum order
IMAGE_ARRAYS: tuple[str, ...] = ("mask", "contrast", "contrast_clean", "dsa_target", "iodine_mg_per_cm2",
                                 "vessel_mask")
#: image array name -> dtype (float32 images in -ln(I/I0) or mg/cm^2; uint8 vessel mask)
IMAGE_DTYPES: dict[str, np.dtype] = {name: np.dtype(np.float32) for name in IMAGE_ARRAYS[:-1]}
IMAGE_DTYPES["vessel_mask"] = np.dtype(np.uint8)
#: images with a frame axis in a sequence store (the mask frame is one per sample)
FRAME_ARRAYS: tuple[str, ...] = IMAGE_ARRAYS[1:]
#: placeholder in a :data:`META_ARRAYS` shape: the number of frames (1 in a single-frame store)
FRAMES = "frames"

#: Order of the values of the ``collimation`` meta array (a sample's ``collimation`` dict keys).
COLLIMATION_META: tuple[str, ...] = ("left", "right", "top", "bottom", "iris_diameter")
#: group of the per-sample metadata arrays
META_GROUP = "meta"
#: the values of ``meta/split``: a sample's split, by CT
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: root attribute of an exported store: the plan's number of samples per split (written with the store, before any
#: sample), against which a reader counts what an interrupted export left out
SPLIT_COUNTS_ATTR = "samples_per_split"
#: ``meta/ct_id`` of a pseudo-patient: its source CT's id, this, and its number (``chest~p3``)
PSEUDO_PATIENT_SEPARATOR = "~p"
#: meta/ arrays: name -> (dtype, per-sample shape); ``str`` is a Zarr v3 variable-length UTF-8 string
META_ARRAYS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "complete": (np.uint8, ()),
    "checksum": (str, ()),
    "split": (str, ()),
    "ct_id": (str, ()),
    "vessel_id": (str, ()),
    "seed": (np.uint64, ()),
    "alpha_deg": (np.float64, ()),
    "beta_deg": (np.float64, ()),
    "gamma_deg": (np.float64, ()),
    "isocenter_mm": (np.float64, (3,)),
    "projection_matrix": (np.float64, (3, 4)),
    "kvp": (np.float64, ()),
    "photons_per_pixel": (np.float64, ()),
    "iodine_mg_per_ml": (np.float64, ()),
    "params_json": (str, ()),
    "mas": (np.float64, ()),
    "air_kerma_ugy": (np.float64, ()),
    "detector_air_kerma_ugy": (np.float64, ()),
    "filter_al_mm": (np.float64, ()),
    "filter_cu_mm": (np.float64, ()),
    "grid": (np.uint8, ()),
    "detector_mtf50_cycles_per_mm": (np.float64, ()),
    "bit_depth": (np.uint8, ()),
    "frame_times_s": (np.float64, (FRAMES,)),
    "mask_time_s": (np.float64, ()),
    "collimation": (np.float64, (len(COLLIMATION_META),)),
}
#: meta arrays new in version 2 (exposure per frame; NaN where a renderer does not know them)
V2_META_ARRAYS: tuple[str, ...] = ("mas", "air_kerma_ugy", "detector_air_kerma_ugy")
#: meta arrays new in version 3 (bolus time of each contrast frame and of the mask frame, s; NaN: a
#: fully filled frame / unknown)
V3_META_ARRAYS: tuple[str, ...] = ("frame_times_s", "mask_time_s")
#: optional meta arrays (exposure randomisation): every new store has them, a store made before them
#: lacks them; readers and a resumed writer skip those a store lacks.
#: ``grid``: 1 when an anti-scatter grid was in the beam (scatter on and a grid), else 0;
#: ``detector_mtf50_cycles_per_mm``: NaN without detector blur; ``bit_depth``: 0 for a float signal;
#: ``collimation``: ``[left, right, top, bottom, iris_diameter]`` fractions of the stored image's side
#: covered by each blade and the iris diameter (of the smaller side), all 0 for an open field (and in a
#: store made before collimation).
OPTIONAL_META_ARRAYS: tuple[str, ...] = ("filter_al_mm", "filter_cu_mm", "grid", "detector_mtf50_cycles_per_mm",
                                         "bit_depth", "collimation")
#: meta arrays a writer is given per sample: all but its own ``complete`` flag and ``checksum``
SAMPLE_META_ARRAYS: tuple[str, ...] = tuple(name for name in META_ARRAYS if name not in ("complete", "checksum"))


def sample_chunks(per_sample_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunk shape of an array whose samples have ``per_sample_shape``: one chunk per sample.

    One chunk per sample is what lets parallel writers never share a chunk file.
    """
    return (1, *(int(s) for s in per_sample_shape))


def source_ct_id(ct_id: str) -> str:
    """The source CT of a stored ``ct_id``: a pseudo-patient's ``<source>~p<k>`` -> ``<source>``, any
    other id unchanged (a split holds whole source CTs, so this is the unit a result is reported by)."""
    source, sep, k = ct_id.rpartition(PSEUDO_PATIENT_SEPARATOR)
    return source if sep and source and k.isdigit() else ct_id


def store_frames(attrs: Mapping[str, Any]) -> int:
    """T of a store from its root attributes: 0 for a single-frame store (every version 1-2 store)."""
    return int(attrs.get(FRAMES_ATTR) or 0)


def image_sample_shape(name: str, image_shape: tuple[int, int], frames: int) -> tuple[int, ...]:
    """Per-sample shape of image array ``name``: ``(H, W)``, or ``(T, H, W)`` for a :data:`FRAME_ARRAYS`
    array of a sequence store (``frames`` = T >= 1)."""
    h, w = (int(image_shape[0]), int(image_shape[1]))
    return (int(frames), h, w) if frames and name in FRAME_ARRAYS else (h, w)


def meta_sample_shape(name: str, frames: int) -> tuple[int, ...]:
    """Per-sample shape of meta array ``name`` (:data:`FRAMES` resolved: T, at least 1)."""
    return tuple(max(int(frames), 1) if s == FRAMES else int(s) for s in META_ARRAYS[name][1])


def exposed_field(collimation: Any, shape: tuple[int, int]) -> np.ndarray:
    """Pixels (bool, ``shape``) inside the geometric field of a sample's ``collimation`` meta value.

    ``[left, right, top, bottom, iris_diameter]`` (:data:`OPTIONAL_META_ARRAYS`): a pixel is exposed
    when its centre lies between the blades and inside the iris (centred on the image, diameter a
    fraction of the smaller side; 0: none). All True for an open field (all zeros, or None: a store
    made before collimation). Outside it the stored targets are 0 and the frames saturate
    (docs/store_format.md).
    """
    h, w = (int(shape[0]), int(shape[1]))
    if collimation is None:
        return np.ones((h, w), dtype=bool)
    left, right, top, bottom, iris = (float(v) for v in np.asarray(collimation, dtype=np.float64))
    y = (np.arange(h) + 0.5)[:, None]
    x = (np.arange(w) + 0.5)[None, :]
    inside = (x >= left * w) & (x <= (1.0 - right) * w) & (y >= top * h) & (y <= (1.0 - bottom) * h)
    if iris > 0:
        inside &= np.hypot(y - h / 2.0, x - w / 2.0) <= iris * min(h, w) / 2.0
    return inside


def sample_checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 (64 hex digits) of a sample's image bytes.

    The bytes of each image of :data:`IMAGE_ARRAYS`, in that order, C order, little-endian, in its
    :data:`IMAGE_DTYPES` dtype (as stored; a sequence's frames in frame order). Other keys of ``arrays``
    are ignored.
    """
    h = hashlib.sha256()
    for name in IMAGE_ARRAYS:
        h.update(np.ascontiguousarray(arrays[name], dtype=IMAGE_DTYPES[name].newbyteorder("<")).tobytes())
    return h.hexdigest()
