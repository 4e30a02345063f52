"""experiments/bench_vessel_quality.py: the cost of the vessel GANs' quality features per volume."""

from __future__ import annotations

import json

import numpy as np

from vessel_models.gan.data import save_label_volume


def test_reports_the_cost_per_volume_and_per_evaluation(experiment_script, capsys, tmp_path):
    bench = experiment_script("bench_vessel_quality.py")
    j, k = np.mgrid[:16, :16]
    for t in range(4):
        save_label_volume(np.broadcast_to((j - 6 - t) ** 2 + (k - 8) ** 2 <= 4, (16, 16, 16)).copy(), 1.0,
                          tmp_path / f"tube_{t}.nii.gz")
    assert bench.main(["--folder", str(tmp_path), "-n", "3", "--repeat", "1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["volumes"] == 3 and result["shape"] == [16, 16, 16]
    per_volume_s = result["ms_per_volume"] / 1000
    # an evaluation costs eval_samples volumes' features plus one comparison (rounded to ms)
    assert abs(result["eval_128_s"] - result["eval_32_s"] - 96 * per_volume_s) < 2e-3
