"""experiments/duan/references.py: the set references against sums worked out by hand on a synthetic store."""

import numpy as np
import pytest
from scipy import ndimage

from ddsa_sim.training.data import ZarrDDSADataset
from ddsa_sim.training.synthetic import write_synthetic_store


def test_set_references_by_hand(experiment_script, tmp_path):
    refs = experiment_script("duan/references.py")
    store = write_synthetic_store(tmp_path / "s.zarr", splits={"train": 1, "test": 2}, per_ct=2, size=32)
    out = refs.set_references(store)
    ds = ZarrDDSADataset(store, "test")
    items = [{k: ds[i][k][0].numpy().astype(np.float64) for k in ("contrast", "contrast_clean", "mask", "dsa_target")}
             for i in range(len(ds))]
    data_range = max(it["dsa_target"].max() for it in items) - min(it["dsa_target"].min() for it in items)

    def mean_psnr(image_of):
        return np.mean([10 * np.log10(data_range**2 / np.mean((image_of(it) - it["dsa_target"]) ** 2)) for it in items])

    # known anatomy: the target plus the contrast frame's own noise
    assert out["psnr"]["known"] == pytest.approx(mean_psnr(lambda it: it["dsa_target"] + it["contrast"] - it["contrast_clean"]),
                                                 rel=1e-6)
    assert out["psnr"]["conventional"] == pytest.approx(mean_psnr(lambda it: it["contrast"] - it["mask"]), rel=1e-6)
    assert out["psnr"]["zero"] == pytest.approx(mean_psnr(lambda it: 0 * it["dsa_target"]), rel=1e-6)
    # the Gaussian: the known-anatomy image smoothed at the sigma with the best mean PSNR of the set
    by_sigma = {s: mean_psnr(lambda it, s=s: ndimage.gaussian_filter(
        it["dsa_target"] + it["contrast"] - it["contrast_clean"], s)) for s in refs.SIGMAS_PX}
    best = max(by_sigma, key=by_sigma.get)
    assert out["sigma_px"] == best and out["psnr"]["gaussian"] == pytest.approx(by_sigma[best], rel=1e-6)
    # the Wiener oracle passes a noise-free image unchanged (|T|^2 / (|T|^2 + 0))
    t = items[0]["dsa_target"]
    np.testing.assert_allclose(refs.wiener_oracle(t, t), t, atol=1e-12)
