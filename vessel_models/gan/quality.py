"""How close generated vessel volumes are to real ones, measured on vessel statistics (offline).

No feature network: each binary volume is described by vessel statistics (:data:`FEATURES`) --
volume fraction; radius distribution (distance transform sampled on the skeleton: mean and 90th
percentile); connected components (26-connectivity) and the fraction of vessel voxels in the
largest; skeleton branches (count, mean length) and tortuosity (path length / chord per branch).
Two sets of volumes are compared per feature by the 1-D Wasserstein distance divided by the
reference set's standard deviation, jointly by the squared MMD of the standardised feature vectors
(Gaussian kernel, bandwidth from the reference set's median pairwise distance), and by k-NN
precision / recall (Kynkaenniemi et al. 2019): the fraction of generated samples inside the
reference manifold and of reference samples inside the generated one.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, stats

__all__ = ["FEATURES", "compare_sets", "feature_matrix", "vessel_features"]

FEATURES = ("volume_fraction", "radius_mean_mm", "radius_p90_mm", "n_components", "largest_fraction",
            "n_branches", "branch_length_mean_mm", "tortuosity_mean")

_CUBE = np.ones((3, 3, 3), dtype=bool)


def _branches(skeleton: np.ndarray, spacing_mm: float) -> tuple[int, np.ndarray, np.ndarray]:
    """(branch count, lengths mm, tortuosities) of a skeleton: pieces left after removing junctions."""
    neighbours = ndimage.convolve(skeleton.astype(np.uint8), _CUBE.astype(np.uint8), mode="constant") - 1
    pieces, n = ndimage.label(skeleton & (neighbours <= 2), structure=_CUBE)
    lengths, tortuosity = [], []
    for sl, idx in zip(ndimage.find_objects(pieces), range(1, n + 1)):
        pts = np.argwhere(pieces[sl] == idx)
        if len(pts) < 2:
            continue
        # a chain of voxels: length = sum of steps along its principal order (voxels sorted by projection)
        centred = pts - pts.mean(axis=0)
        axis = np.linalg.svd(centred, full_matrices=False)[2][0]
        chain = pts[np.argsort(centred @ axis)]
        path = float(np.linalg.norm(np.diff(chain, axis=0), axis=1).sum())
        chord = float(np.linalg.norm(chain[-1] - chain[0]))
        lengths.append(path * spacing_mm)
        if len(pts) >= 4 and chord > 0:
            tortuosity.append(path / chord)
    return len(lengths), np.asarray(lengths), np.asarray(tortuosity)


def vessel_features(label: np.ndarray, spacing_mm: float) -> dict[str, float]:
    """The :data:`FEATURES` of one binary volume (isotropic ``spacing_mm``); an empty volume gives zeros
    (tortuosity 1)."""
    from skimage.morphology import skeletonize

    fg = np.asarray(label, dtype=bool)
    out = dict.fromkeys(FEATURES, 0.0)
    out["tortuosity_mean"] = 1.0
    if not fg.any():
        return out
    out["volume_fraction"] = float(fg.mean())
    comps, n = ndimage.label(fg, structure=_CUBE)
    sizes = np.bincount(comps.ravel())[1:]
    out["n_components"] = float(n)
    out["largest_fraction"] = float(sizes.max() / sizes.sum())
    skeleton = skeletonize(fg) > 0
    if skeleton.any():
        radii = ndimage.distance_transform_edt(np.pad(fg, 1))[1:-1, 1:-1, 1:-1][skeleton] * spacing_mm
        out["radius_mean_mm"] = float(radii.mean())
        out["radius_p90_mm"] = float(np.percentile(radii, 90))
        count, lengths, tort = _branches(skeleton, spacing_mm)
        out["n_branches"] = float(count)
        out["branch_length_mean_mm"] = float(lengths.mean()) if lengths.size else 0.0
        out["tortuosity_mean"] = float(tort.mean()) if tort.size else 1.0
    return out


def feature_matrix(volumes, spacing_mm: float) -> np.ndarray:
    """``(N, len(FEATURES))`` features of an iterable of binary volumes."""
    rows = (vessel_features(v, spacing_mm) for v in volumes)
    return np.array([[f[k] for k in FEATURES] for f in rows], dtype=np.float64).reshape(-1, len(FEATURES))


def _knn_radius(x: np.ndarray, k: int) -> np.ndarray:
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    return np.sort(d, axis=1)[:, min(k, len(x) - 1)]


def _coverage(points: np.ndarray, manifold: np.ndarray, k: int) -> float:
    """Fraction of ``points`` within the k-NN ball of some ``manifold`` point."""
    radius = _knn_radius(manifold, k)
    d = np.linalg.norm(points[:, None] - manifold[None], axis=-1)
    return float(np.mean(np.any(d <= radius[None], axis=1)))


def _mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    def k(a, b):
        return np.exp(-np.sum((a[:, None] - b[None]) ** 2, axis=-1) / (2 * bandwidth**2))

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.mean())


def compare_sets(generated: np.ndarray, reference: np.ndarray, k: int = 3) -> dict[str, float]:
    """Distances between two feature matrices (:func:`feature_matrix`), ``reference`` the real set.

    Raises
    ------
    ValueError
        Fewer than two volumes in either set (the unbiased MMD and the spreads need two).

    Returns
    -------
    dict
        ``w1_<feature>`` (Wasserstein-1 / reference std), ``w1_mean`` (their mean), ``w1_median`` (their
        median: what a run selects ``best.pt`` by, as one feature with a tiny reference spread can
        dominate the mean), ``mmd2`` (unbiased
        squared MMD of standardised features), ``precision`` and ``recall`` (k-NN coverage, in [0, 1]).
    """
    gen, ref = np.asarray(generated, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if len(gen) < 2 or len(ref) < 2:
        raise ValueError(f"compare_sets needs at least 2 volumes per set, got {len(gen)} and {len(ref)}")
    mu, sd = ref.mean(axis=0), ref.std(axis=0)
    sd = np.where(sd > 1e-9 * (np.abs(mu) + 1), sd, 1.0)  # a constant feature: unscaled
    zg, zr = (gen - mu) / sd, (ref - mu) / sd
    out = {f"w1_{name}": float(stats.wasserstein_distance(zg[:, i], zr[:, i])) for i, name in enumerate(FEATURES)}
    per_feature = [out[f"w1_{n}"] for n in FEATURES]
    out["w1_mean"], out["w1_median"] = float(np.mean(per_feature)), float(np.median(per_feature))
    pair = np.linalg.norm(zr[:, None] - zr[None], axis=-1)
    bandwidth = float(np.median(pair[np.triu_indices(len(zr), 1)])) or 1.0
    out["mmd2"] = _mmd2(zg, zr, bandwidth)
    out["precision"] = _coverage(zg, zr, k)
    out["recall"] = _coverage(zr, zg, k)
    return out
