"""`ddsa-sim inspect` on damaged stores: every kind of damage is reported (CORRUPTED naming the chunk, exit 1)
or refused in one line (exit 2), never a traceback; a sound store is not flagged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import zarr
from typer.testing import CliRunner

from ddsa_sim import InputError
from ddsa_sim.cli import app
from ddsa_sim.export.inspect import WRITTEN_META, inspect_store, sample_png
from ddsa_sim.export.store import completed, open_store
from ddsa_sim.training.synthetic import write_synthetic_store

N = 8  # complete samples of the store below, and one incomplete slot after them


@pytest.fixture(scope="module")
def sound(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inspect") / "ds.zarr"
    return write_synthetic_store(path, splits={"train": 2, "val": 1, "test": 1}, per_ct=2, size=16, incomplete=1)


@pytest.fixture
def store(sound, tmp_path) -> Path:
    """A copy of the sound store to damage."""
    return Path(shutil.copytree(sound, tmp_path / "ds.zarr"))


def _inspect(*args: str):
    res = CliRunner().invoke(app, ["inspect", *map(str, args)])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output  # no traceback
    return res


def _error_line(*args: str) -> str:
    res = _inspect(*args)
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


def test_a_sound_store_is_not_flagged(sound):
    report = inspect_store(sound)
    assert report.ok and report.n_complete == N and report.incomplete == [N]
    assert not report.header and not report.flag_lost and sum(report.samples_per_split.values()) == N
    res = _inspect(sound)
    assert res.exit_code == 0 and "INCOMPLETE 1 sample(s)" in res.output and f"{N} sample checksum(s) OK" in res.output


@pytest.mark.parametrize(("chunk", "garbage", "index"), [
    ("meta/complete/c/0", b"\x07\x07\x07", 0),
    ("meta/checksum/c/1", b"xx", 1),
    ("meta/projection_matrix/c/2/0/0", b"garbage!", 2),
    ("meta/split/c/3", b"\x01", 3),
])
def test_an_undecodable_meta_chunk_is_reported_not_raised(store, chunk, garbage, index):
    (store / chunk).write_bytes(garbage)
    report = inspect_store(store)
    assert [i for i, _ in report.corrupted] == [index] and f"chunk {chunk} unreadable" in report.corrupted[0][1]
    res = _inspect(store)
    assert res.exit_code == 1 and f"#{index}: chunk {chunk} unreadable" in res.output
    # the sample's picture is refused in one line; the other samples' are still written
    line = _error_line(store, "--png", index, "--png-out", store.parent / "a.png")
    assert f"sample {index} is corrupted (chunk {chunk} unreadable" in line
    other = (index + 1) % N
    assert _inspect(store, "--png", other, "--png-out", store.parent / "b.png").exit_code == 0
    if chunk.startswith("meta/complete/"):  # a resumed export writes the sample again
        assert not completed(open_store(store))[index]


def test_damaged_array_metadata_is_one_line_naming_the_file(store):
    meta = store / "mask" / "zarr.json"
    meta.write_bytes(meta.read_bytes()[:50])
    line = _error_line(store)
    assert f"{meta}: damaged array metadata (JSONDecodeError)" in line
    with pytest.raises(InputError, match="mask/zarr.json: damaged array metadata"):
        inspect_store(store)
    assert "mask/zarr.json" in _error_line(store, "--png", 0, "--png-out", store.parent / "a.png")


@pytest.mark.parametrize("name", WRITTEN_META)
def test_a_deleted_meta_chunk_of_a_complete_sample_is_reported(store, name):
    """Zarr reads a missing chunk as the fill value ("" or 0) without a word; none of these is ever written so."""
    arr = zarr.open_array(str(store / "meta" / name), mode="r")
    chunk = "/".join(["meta", name, "c", "3", *["0"] * (arr.ndim - 1)])
    (store / chunk).unlink()
    report = inspect_store(store)
    assert report.corrupted == [(3, f"chunk file {chunk} missing (Zarr read it as {arr.fill_value!r})")]
    # the per-split counts and CTs leave the damaged sample out (a blank split / CT id is none)
    assert sum(report.samples_per_split.values()) == N - 1
    res = _inspect(store)
    assert res.exit_code == 1 and f"#3: chunk file {chunk} missing" in res.output
    assert f"chunk file {chunk} missing" in _error_line(store, "--png", 3, "--png-out", store.parent / "a.png")


def test_a_split_that_is_none_of_the_splits_is_reported(store):
    zarr.open_array(str(store / "meta" / "split"), mode="r+")[1] = "training"
    assert inspect_store(store).corrupted == [(1, "meta/split is 'training', not one of train, val, test")]


def test_a_deleted_image_chunk_is_named(store):
    (store / "mask" / "c" / "2" / "0" / "0").unlink()
    report = inspect_store(store)
    assert report.corrupted == [(2, "checksum mismatch: chunk file(s) mask/c/2/0/0 missing (Zarr read them as zeros)")]
    assert "mask/c/2/0/0 missing" in _error_line(store, "--png", 2, "--png-out", store.parent / "a.png")


def test_a_lost_complete_flag_is_named(store):
    """A deleted ``meta/complete`` chunk reads 0 (incomplete); the images and checksum say the sample was written."""
    (store / "meta" / "complete" / "c" / "5").unlink()
    report = inspect_store(store)
    assert report.incomplete == [5, N] and [i for i, _ in report.flag_lost] == [5]  # slot N: never written
    assert report.flag_lost[0][1].startswith("chunk file meta/complete/c/5 missing (read as 0), yet its images and "
                                             "checksum are written and agree")
    res = _inspect(store)
    assert "INCOMPLETE 2 sample(s)" in res.output and "#5: chunk file meta/complete/c/5 missing" in res.output


def test_png_out_must_name_a_picture_before_any_work(sound, tmp_path):
    line = _error_line(tmp_path / "no_store.zarr", "--png", 0, "--png-out", tmp_path / "a.json")
    assert "--png-out" in line and "a.json" in line and ".png, .jpg, .jpeg, .pdf, .svg" in line
    with pytest.raises(InputError, match="--png-out"):
        sample_png(sound, 0, tmp_path / "a")
    assert not list(tmp_path.iterdir())
    assert "give --png too" in _error_line(sound, "--png-out", tmp_path / "a.png")
    assert _inspect(sound, "--png", 0, "--png-out", tmp_path / "a.svg").exit_code == 0
    assert (tmp_path / "a.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize(("key", "value", "said"), [
    ("image_shape", [8, 8], "attribute image_shape is [8, 8], the arrays hold 16x16 images"),
    ("n_samples", 10, f"attribute n_samples is 10, the arrays hold {N + 1} samples"),
    ("frames", 3, "attribute frames is 3, the arrays hold one frame per sample"),
])
def test_root_attributes_are_checked_against_the_arrays(store, key, value, said):
    root = zarr.open_group(str(store), mode="r+")
    root.attrs[key] = value
    report = inspect_store(store)
    assert report.header == [said] and not report.ok and not report.corrupted
    assert report.image_shape == (16, 16) and report.n_samples == N + 1 and report.frames == 0  # the arrays'
    res = _inspect(store)
    assert res.exit_code == 1 and f"HEADER     {said}" in res.output and "images 16x16" in res.output


def test_arrays_that_disagree_are_refused_in_one_line(store):
    zarr.open_array(str(store / "contrast"), mode="r+").resize((N, 16, 16))
    line = _error_line(store)
    assert f"array contrast is ({N}, 16, 16), not ({N + 1}, 16, 16)" in line and "damaged" in line
    with pytest.raises(InputError, match="array contrast is"):
        sample_png(store, 0, store.parent / "a.png")
