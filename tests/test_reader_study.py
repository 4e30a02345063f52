"""Reader study: a blinded, self-contained page (checked in headless chromium), the key, the score.

Truth: the key written at making time (which GIF file is behind each image), scores filled in by the
test as a reader would, the summary recomputed by hand, and the exact Wilcoxon p-value from
enumerating every sign pattern of the paired differences. A study made again from the same runs and
seed must be byte for byte the same; a CSV saved again by a spreadsheet must score as the page's.
"""

import base64
import csv
import itertools
import json
import re
import shutil
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image
from xa_helpers import STUDY, phantom, tiny_checkpoint, write_multiframe

from ddsa_sim import InputError
from ddsa_sim.angio.reader_study import CRITERIA, KEY_NAME, PAGE_NAME, make_study, score_study
from ddsa_sim.cli import main
from ddsa_sim.training.infer import infer_path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four ``infer`` output folders of different phantom runs."""
    root = tmp_path_factory.mktemp("runs")
    ckpt = tiny_checkpoint(root / "tiny.pt")
    folders = []
    for k in range(4):
        write_multiframe(root / f"patient_run_{k}.dcm", phantom(12, seed=k))
        infer_path(ckpt, root / f"patient_run_{k}.dcm", root / f"out_run_{k}", progress=False)
        folders.append(root / f"out_run_{k}")
    return folders


def _cli(*args: str) -> int:
    """Run ``ddsa-sim ARGS`` in-process; its exit code."""
    with pytest.raises(SystemExit) as done:
        main(list(args))
    return done.value.code


def _page_data(page):
    text = page.read_text()
    return json.loads(re.search(r'<script id="study" type="application/json">(.*?)</script>', text, re.S).group(1))


def test_page_is_blinded_self_contained_and_the_key_unblinds(runs, tmp_path):
    page, key_path = make_study(runs, tmp_path / "study", seed=5)
    html = page.read_text()
    key = json.loads(key_path.read_text())
    assert key_path.parent == page.parent and key["seed"] == 5
    for secret in (STUDY["PatientName"], STUDY["PatientID"], STUDY["StudyInstanceUID"], "patient_run", "out_run",
                   "network", "conventional", "Network", "Conventional", str(tmp_path)):
        assert secret not in html, secret
    assert not re.search(r'(src|href)="(?!data:)', html) and "<link" not in html  # nothing outside the file
    # scores are stored per reader ID (a second reader must not see the first's), the ID is never pre-filled
    stored = re.findall(r"localStorage\.(?:get|set)Item\(([^,)]*\)?)", html)
    assert stored and set(stored) == {"storeKey(reader)"}, stored
    assert "value=" not in re.search(r'<input id="reader"[^>]*>', html).group(0)
    data = _page_data(page)
    assert data["study_id"] == key["study_id"] and [c["case"] for c in data["cases"]] == ["01", "02", "03", "04"]
    for shown, secret in zip(data["cases"], key["cases"]):
        assert shown["case"] == secret["case"] and {secret["A"], secret["B"]} == {"network", "conventional"}
        for image in ("A", "B"):  # the picture behind each letter: the key's method of the key's run
            gif = iio.imread(base64.b64decode(shown["images"][image]), extension=".gif", index=None)
            folder = Path(secret["run"]) / secret[image]
            pngs = np.stack([np.asarray(Image.open(folder / f"frame_{k:03d}.png")) for k in range(1, 6)])
            np.testing.assert_array_equal(gif[..., 0], pngs)  # all frames but the mask frame 0
    assert sorted(c["run"] for c in key["cases"]) == sorted(str(r.resolve()) for r in runs)
    # the seed fixes order and sides; both sides occur; another seed gives another study
    again = json.loads(make_study(runs, tmp_path / "again", seed=5)[1].read_text())
    assert [(c["run"], c["A"]) for c in again["cases"]] == [(c["run"], c["A"]) for c in key["cases"]]
    assert {c["A"] for c in key["cases"]} == {"network", "conventional"}
    other = json.loads(make_study(runs, tmp_path / "other", seed=6)[1].read_text())
    assert [(c["run"], c["A"]) for c in other["cases"]] != [(c["run"], c["A"]) for c in key["cases"]]


def test_make_refuses_a_folder_that_is_not_an_infer_output(runs, tmp_path):
    with pytest.raises(InputError, match="not a 'ddsa-sim infer' output"):
        make_study([runs[0], tmp_path], tmp_path / "study")


def test_the_study_follows_from_its_runs_and_seed(runs, tmp_path):
    """Made again (lost page, another machine), a study is the same, so the CSVs handed out still score."""
    page, key_path = make_study(runs, tmp_path / "a", seed=5)
    again = make_study(runs[::-1], tmp_path / "b", seed=5)  # the order the runs are given in does not matter
    assert again[0].read_bytes() == page.read_bytes() and again[1].read_bytes() == key_path.read_bytes()
    study = json.loads(key_path.read_text())["study_id"]
    assert re.fullmatch(r"[a-df][0-9a-f]{7}", study)  # never a number a spreadsheet would rewrite
    # no seed: one drawn from the runs, the same each time, written to the key
    drawn = [json.loads(make_study(runs, tmp_path / name)[1].read_text()) for name in ("c", "d")]
    assert drawn[0] == drawn[1] and isinstance(drawn[0]["seed"], int) and drawn[0]["study_id"] != study
    # another seed or other runs: another study
    assert json.loads(make_study(runs, tmp_path / "e", seed=6)[1].read_text())["study_id"] != study
    assert json.loads(make_study(runs[:3], tmp_path / "f", seed=5)[1].read_text())["study_id"] != study
    with pytest.raises(InputError, match="--seed must be 0 or more"):
        make_study(runs, tmp_path / "g", seed=-5)


def test_make_refuses_a_folder_holding_files_unless_overwrite(runs, tmp_path, capsys):
    out = tmp_path / "study"
    _, key_path = make_study(runs[:2], out, seed=1)
    before = key_path.read_bytes()
    with pytest.raises(InputError, match="output folder exists and is not empty.*--overwrite"):
        make_study(runs[:2], out, seed=2)
    assert key_path.read_bytes() == before  # the key of the CSVs handed out is kept
    (out / "stale.txt").write_text("an older study's file")
    with pytest.raises(InputError, match="not a 'ddsa-sim infer' output"):
        make_study([runs[0], tmp_path / "nothing"], out, overwrite=True)
    assert key_path.read_bytes() == before and (out / "stale.txt").exists()  # inputs checked before emptying
    make_study(runs[:2], out, seed=1, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [PAGE_NAME, KEY_NAME] and key_path.read_bytes() == before
    with pytest.raises(InputError, match="would delete the input"):  # a folder holding the runs is never emptied
        make_study(runs[:1], runs[0].parent, overwrite=True)
    assert runs[0].is_dir()
    # the command line: one error line and exit 2, as every command
    (tmp_path / "file").write_text("x")
    assert _cli("reader-study", str(runs[0]), str(runs[1]), "-o", str(tmp_path / "file")) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'file'}: is a file, not a folder; choose another output\n"
    assert _cli("reader-study", str(runs[0]), str(runs[1]), "-o", str(out), "--seed", "2") == 2
    assert "not empty" in capsys.readouterr().err and key_path.read_bytes() == before
    assert _cli("reader-study", str(runs[0]), str(runs[1]), "-o", str(out), "--seed", "2", "--overwrite") == 0
    assert json.loads(key_path.read_text())["seed"] == 2


def _exact_wilcoxon_p(diff: np.ndarray) -> float:
    """Two-sided p of the signed-rank statistic by enumerating all 2**n sign patterns (no ties, no zeros)."""
    ranks = np.argsort(np.argsort(np.abs(diff))) + 1
    observed = ranks[diff > 0].sum()
    centre = ranks.sum() / 2
    totals = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product((0, 1), repeat=len(ranks))]
    return float(np.mean([abs(t - centre) >= abs(observed - centre) for t in totals]))


def _write_scores(path, key, scores_by_method):
    """One reader's CSV as the page writes it; ``scores_by_method[criterion][method]`` lists per case."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["study_id", "reader", "case", "image", *[c for c, _, _ in CRITERIA]])
        for i, case in enumerate(key["cases"]):
            for image in ("A", "B"):
                values = [scores_by_method[c][case[image]][i] for c, _, _ in CRITERIA]
                writer.writerow([key["study_id"], "R1", case["case"], image, *values])


SCORES = {  # per case 01..04
    "vessel_visibility": {"network": [5, 4, 4, 3], "conventional": [3, 4, 2, ""]},  # one pair incomplete
    "artefacts": {"network": [4, 4, 3, 3], "conventional": [4, 4, 3, 3]},  # all equal
    "overall": {"network": [5, 4, 1, 4], "conventional": [1, 1, 2, 2]},  # differences 4, 3, -1, 2
}


def test_score_summary_against_hand_computation(runs, tmp_path):
    _, key_path = make_study(runs, tmp_path, seed=1)
    key = json.loads(key_path.read_text())
    _write_scores(tmp_path / "r1.csv", key, SCORES)
    summary = score_study([tmp_path / "r1.csv"], key_path)
    overall = summary["criteria"]["overall"]
    assert overall["n_pairs"] == 4 and overall["network"]["mean"] == 3.5 and overall["conventional"]["mean"] == 1.5
    assert overall["difference"]["mean"] == 2.0 and overall["difference"]["sd"] == pytest.approx(np.std([4, 3, -1, 2],
                                                                                                        ddof=1))
    assert (overall["difference"]["network_better"], overall["difference"]["conventional_better"]) == (3, 1)
    assert overall["wilcoxon"]["p_value"] == pytest.approx(_exact_wilcoxon_p(np.array([4, 3, -1, 2])))  # 0.25
    assert overall["wilcoxon"]["p_value"] == pytest.approx(0.25)
    vis = summary["criteria"]["vessel_visibility"]
    assert vis["n_pairs"] == 3 and vis["difference"]["mean"] == pytest.approx(4 / 3)
    assert summary["criteria"]["artefacts"]["wilcoxon"] is None and summary["criteria"]["artefacts"]["difference"][
        "equal"] == 4
    unblinded = list(csv.DictReader(open(tmp_path / "r1_unblinded.csv")))
    assert len(unblinded) == 8 and {r["method"] for r in unblinded} == {"network", "conventional"}
    for row in unblinded:
        case = key["cases"][int(row["case"]) - 1]
        assert row["method"] == case[row["image"]] and row["run"] == case["run"]


def test_score_refuses_bad_csv_with_one_line_naming_the_file(runs, tmp_path):
    _, key_path = make_study(runs, tmp_path, seed=1)
    key = json.loads(key_path.read_text())
    _write_scores(tmp_path / "r1.csv", key, SCORES)
    text = (tmp_path / "r1.csv").read_text().splitlines()
    (tmp_path / "six.csv").write_text("\n".join([text[0], text[1].rsplit(",", 1)[0] + ",6"]) + "\n")
    (tmp_path / "other.csv").write_text("\n".join([text[0], text[1].replace(key["study_id"], "deadbeef")]) + "\n")
    for name, needle in (("six.csv", "must be 1-5"), ("other.csv", "is not this key's study")):
        with pytest.raises(InputError, match=needle) as err:
            score_study([tmp_path / name], key_path)
        assert f"{name}:2" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InputError, match="twice"):
        score_study([tmp_path / "r1.csv", tmp_path / "r1.csv"], key_path)


def test_score_writes_nothing_until_every_csv_passes(runs, tmp_path):
    """The unblinded files tell the method per image: a refused set of CSVs must leave none behind."""
    _, key_path = make_study(runs, tmp_path, seed=1)
    key = json.loads(key_path.read_text())
    _write_scores(tmp_path / "a.csv", key, SCORES)
    shutil.copy(tmp_path / "a.csv", tmp_path / "b.csv")  # the same reader's scores again
    lines = (tmp_path / "a.csv").read_text().splitlines()
    (tmp_path / "c.csv").write_text("\n".join([lines[0], lines[1].rsplit(",", 1)[0] + ",6"]) + "\n")
    for later, needle in (("b.csv", "reader 'R1' scored case 01 image A twice"), ("c.csv", "c.csv:2: overall")):
        with pytest.raises(InputError, match=needle):
            score_study([tmp_path / "a.csv", tmp_path / later], key_path)
        assert not list(tmp_path.glob("*_unblinded.csv"))
    assert score_study([tmp_path / "a.csv"], key_path)["readers"] == ["R1"]
    assert (tmp_path / "a_unblinded.csv").exists()


def test_score_accepts_a_csv_saved_again_by_a_spreadsheet(runs, tmp_path):
    """Excel's "CSV UTF-8": a byte order mark, CRLF, case 01 as 1, trailing empty rows."""
    _, key_path = make_study(runs, tmp_path, seed=1)
    key = json.loads(key_path.read_text())
    _write_scores(tmp_path / "page.csv", key, SCORES)
    rows = list(csv.reader(open(tmp_path / "page.csv")))
    for row in rows[1:]:
        row[2] = str(int(row[2]))  # "01" -> "1"
    text = "\r\n".join(",".join(row) for row in rows + [[""] * len(rows[0])] * 2) + "\r\n"
    (tmp_path / "excel.csv").write_text(text, encoding="utf-8-sig", newline="")
    summary = score_study([tmp_path / "excel.csv"], key_path)
    assert summary == score_study([tmp_path / "page.csv"], key_path)
    unblinded = list(csv.DictReader(open(tmp_path / "excel_unblinded.csv")))
    assert [r["case"] for r in unblinded] == [c["case"] for c in key["cases"] for _ in "AB"]  # the key's ids
    with pytest.raises(InputError, match="scored case 01 image A twice"):  # "1" and "01" are one case
        score_study([tmp_path / "excel.csv", tmp_path / "page.csv"], key_path)
    latin1 = ",".join(rows[0]) + f"\n{key['study_id']},M\xfcller,01,A,1,1,1\n"  # Excel's plain "CSV": cp1252
    (tmp_path / "latin1.csv").write_bytes(latin1.encode("cp1252"))
    with pytest.raises(InputError, match="latin1.csv: not UTF-8 text"):
        score_study([tmp_path / "latin1.csv"], key_path)
    (tmp_path / "anonymous.csv").write_text(",".join(rows[0]) + f"\n{key['study_id']},,01,A,1,1,1\n")
    with pytest.raises(InputError, match="anonymous.csv:2: no reader ID"):  # whose pair would it be?
        score_study([tmp_path / "anonymous.csv"], key_path)


def test_score_skips_its_own_outputs(runs, tmp_path, capsys):
    """``score dir/*.csv`` run again picks up the ``*_unblinded.csv`` files it wrote the first time."""
    _, key_path = make_study(runs, tmp_path, seed=1)
    key = json.loads(key_path.read_text())
    _write_scores(tmp_path / "r1.csv", key, SCORES)
    assert _cli("reader-study", "score", str(tmp_path / "r1.csv")) == 0
    first = json.loads(capsys.readouterr().out)
    assert _cli("reader-study", "score", *sorted(map(str, tmp_path.glob("*.csv")))) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == first
    assert err == f"note: skipped 1 file(s) score wrote itself: {tmp_path / 'r1_unblinded.csv'}\n"
    assert score_study([tmp_path / "r1_unblinded.csv", tmp_path / "r1.csv"], key_path) == first
    assert _cli("reader-study", "score", str(tmp_path / "r1_unblinded.csv")) == 2
    assert "no readers' CSV given" in capsys.readouterr().err
    # a readers' CSV is never taken for an output, even where a reader's ID makes its name look like one
    shutil.copy(tmp_path / "r1.csv", tmp_path / "reader_study_x_unblinded.csv")
    assert score_study([tmp_path / "reader_study_x_unblinded.csv"], key_path) == first
    shutil.copy(tmp_path / "r1.csv", tmp_path / "reader_study_x.csv")
    with pytest.raises(InputError, match="reader_study_x_unblinded.csv: is where the unblinded scores of"):
        score_study([tmp_path / "reader_study_x.csv", tmp_path / "reader_study_x_unblinded.csv"], key_path)


def _chromium(download_dir):
    webdriver = pytest.importorskip("selenium.webdriver")
    browser, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip("needs chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                              "download.prompt_for_download": False})
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return chrome


def test_page_in_headless_chromium_fill_save_and_score(runs, tmp_path, capsys):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    page, key_path = make_study(runs, tmp_path / "study", seed=3)
    key = json.loads(key_path.read_text())
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    chrome = _chromium(downloads)

    def enter_reader(text):
        """Type a reader ID over the one in the field, as a person would (input events)."""
        field = chrome.find_element(By.ID, "reader")
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(Keys.BACKSPACE)
        field.send_keys(text)

    def form():
        """(reader ID shown, number of radio buttons checked, whether the form is open)."""
        return (chrome.find_element(By.ID, "reader").get_attribute("value"),
                len(chrome.find_elements(By.CSS_SELECTOR, "input[type=radio]:checked")),
                chrome.find_element(By.CSS_SELECTOR, "input[type=radio]").is_enabled())

    try:
        chrome.get(page.as_uri())
        images = chrome.find_elements(By.TAG_NAME, "img")
        assert len(images) == 8
        assert all(chrome.execute_script("return arguments[0].complete && arguments[0].naturalWidth", im) == 57
                   for im in images)  # every GIF decoded at its size
        assert len(chrome.find_elements(By.CSS_SELECTOR, "input[type=radio]")) == 8 * len(CRITERIA) * 5
        assert form() == ("", 0, False)  # no score before a reader ID
        enter_reader("reader, one")  # a comma: the CSV must quote it
        for i, case in enumerate(key["cases"]):
            for image in ("A", "B"):
                for criterion, _, _ in CRITERIA:
                    value = SCORES[criterion][case[image]][i]
                    if value != "":
                        name = f'{case["case"]}|{image}|{criterion}'
                        chrome.find_element(By.CSS_SELECTOR, f'input[name="{name}"][value="{value}"]').click()
        # scores survive a reload (local storage) and come back only for the same reader ID. Chromium sends a
        # page's local-storage writes to the browser process asynchronously, so a reload milliseconds after the
        # last click can start from the state before it (seen once in CI); a reader who reloads later finds it.
        # Reload until it arrives (10 s).
        deadline, expected = time.time() + 10, ("reader, one", 8 * len(CRITERIA) - 1, True)
        while True:
            chrome.refresh()
            opened = form()
            enter_reader("reader, one")
            restored = form()
            if restored == expected or time.time() > deadline:
                break
            time.sleep(0.2)
        assert opened == ("", 0, False)  # a reload shows neither the last reader's ID nor their scores
        assert restored == expected
        # a second reader at the same workstation starts from an empty form; each finds their own scores
        enter_reader("R2")
        assert form() == ("R2", 0, True)
        chrome.find_element(By.CSS_SELECTOR, 'input[name="01|A|overall"][value="3"]').click()
        enter_reader("")
        assert form() == ("", 0, False)
        enter_reader("reader, one")
        assert form() == expected
        enter_reader("R2")
        assert form() == ("R2", 1, True)
        enter_reader("reader, one")
        chrome.find_element(By.ID, "save").click()
        deadline = time.time() + 20
        while not list(downloads.glob("*.csv")) and time.time() < deadline:
            time.sleep(0.1)
        assert "1 scores still empty" in chrome.find_element(By.ID, "status").text
    finally:
        chrome.quit()
    (saved,) = downloads.glob("*.csv")
    assert saved.name == f"reader_study_{key['study_id']}_reader__one.csv"
    assert _cli("reader-study", "score", str(saved)) == 2  # no key beside the download: one error line
    assert "key not found" in capsys.readouterr().err
    assert _cli("reader-study", "score", str(saved), "--key", str(key_path)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["readers"] == ["reader, one"] and summary["cases"] == 4
    assert summary["criteria"]["overall"]["difference"]["mean"] == 2.0
    assert summary["criteria"]["overall"]["wilcoxon"]["p_value"] == pytest.approx(0.25)
    assert summary["criteria"]["vessel_visibility"]["n_pairs"] == 3


def test_cli_make_is_the_default_command(runs, tmp_path, capsys):
    assert _cli("reader-study", *map(str, runs[:2]), "-o", str(tmp_path / "s"), "--seed", "2") == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "s" / "reader_study.html"), str(tmp_path / "s" / KEY_NAME)]
