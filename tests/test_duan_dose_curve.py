"""experiments/duan/dose_curve.py draws what `ddsa-sim evaluate` reports per dose level."""

import json

import pytest


def _result(offset):
    block = {"network": {"psnr": 30.0 + offset}, "conventional": {"psnr": 25.0}, "known_anatomy": {"psnr": 35.0},
             "zero": {"psnr": 20.0}}
    levels = {"0.01": 0.0, "0.1": 5.0, "1": 10.0, "unknown": 99.0}
    return {"checkpoint": f"runs/r{offset}/last.pt",
            "by_dose_ugy": {k: {m: {"psnr": v["psnr"] + (dv if m != "network" else 0.0)} for m, v in block.items()}
                            for k, dv in levels.items()}}


def test_series_and_figure(experiment_script, tmp_path):
    dc = experiment_script("duan/dose_curve.py")
    doses, psnr = dc.dose_series(_result(1), "known_anatomy")
    assert list(doses) == [0.01, 0.1, 1.0] and list(psnr) == [35.0, 40.0, 45.0]  # "unknown" left out
    assert list(dc.dose_series(_result(1), "network")[1]) == [31.0, 31.0, 31.0]
    paths = []
    for k in (1, 2):
        paths.append(tmp_path / f"r{k}.json")
        paths[-1].write_text(json.dumps(_result(k)))
    png = tmp_path / "dose.png"
    dc.main([*map(str, paths), "-o", str(png), "--title", "t"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"checkpoint": "x.pt"}))
    with pytest.raises(SystemExit, match="old.json: no by_dose_ugy"):
        dc.main([str(old), "-o", str(tmp_path / "x.png")])
