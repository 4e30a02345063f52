"""The pytigre head phantom reader, on a stand-in tarball of the same layout (the data is never committed)."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from scipy.io import savemat

from ddsa_sim import InputError
from ddsa_sim.volumes.readers import read_ct, read_volume
from ddsa_sim.volumes.tigre_head import HU_NODES


def fake_tarball(path, img, member="pytigre-0.1.8/tigre/demos/Test_data/MRheadbrain/head.mat"):
    buf = io.BytesIO()
    savemat(buf, {"img": img})
    raw = buf.getvalue()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    return path


def phantom(n=12):
    img = np.zeros((n, n, n), np.float32)
    img[2:-2, 2:-2, 2:-2] = 0.40  # soft tissue
    img[4, 4, 4] = 0.41
    img[2:-2, 2:-2, -3] = 0.95    # a bone plate at the top
    img[5, 5, 5] = 0.45
    img[6, 6, 6] = 0.70
    return img


def test_values_map_to_hu_and_the_frame_is_centred_1mm(tmp_path, monkeypatch):
    path = fake_tarball(tmp_path / "pytigre-0.1.8.tar.gz", phantom())
    ct = read_ct(path)
    assert ct.data.dtype == np.float32 and ct.shape == (12, 12, 12)
    # float32 phantom values (0.40 is 0.4000000060) hit the nodes to 1e-3 HU
    assert ct.data[0, 0, 0] == -1000.0 and ct.data[3, 3, 3] == pytest.approx(20.0, abs=1e-3)
    assert ct.data[4, 4, 4] == pytest.approx(40.0, abs=1e-3)  # linear between the soft-tissue nodes
    assert ct.data[3, 3, -3] == pytest.approx(2000.0, abs=1e-3) and ct.data[5, 5, 5] == pytest.approx(250.0, abs=1e-3)
    assert ct.data[6, 6, 6] == pytest.approx(250.0 + (0.70 - 0.45) / 0.5 * 1750.0, rel=1e-6)  # linear between nodes
    assert dict(HU_NODES)[0.40] == 20.0 and dict(HU_NODES)[0.42] == 60.0
    np.testing.assert_array_equal(ct.spacing_mm, 1.0)
    np.testing.assert_allclose(ct.center_mm, 0.0, atol=1e-12)
    # the builtin name finds it through the environment, a voxel box crops it
    monkeypatch.setenv("DDSA_SIM_PYTIGRE_TARBALL", str(path))
    np.testing.assert_array_equal(read_ct("builtin:tigre-head").data, ct.data)
    assert read_ct("builtin:tigre-head[0:6,0:12,0:12]").shape == (6, 12, 12)


def test_missing_or_wrong_tarball_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("DDSA_SIM_PYTIGRE_TARBALL", str(tmp_path / "none.tar.gz"))
    with pytest.raises(InputError, match="DDSA_SIM_PYTIGRE_TARBALL=.*no such file; download pytigre"):
        read_ct("builtin:tigre-head")
    monkeypatch.delenv("DDSA_SIM_PYTIGRE_TARBALL")
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(InputError, match="pytigre source tarball is needed"):
        read_ct("builtin:tigre-head")
    other = fake_tarball(tmp_path / "other.tar.gz", phantom(), member="x/data.mat")
    with pytest.raises(InputError, match="not a pytigre source tarball"):
        read_volume(other)
    (tmp_path / "broken.tar.gz").write_bytes(b"not gzip")
    with pytest.raises(InputError, match="cannot read the tarball"):
        read_volume(tmp_path / "broken.tar.gz")
