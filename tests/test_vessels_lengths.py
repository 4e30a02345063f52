"""Lengths of the templates' named segments against published morphometry (docs/vessels.md, section 3).

Ranges are mean +- 2 SD of the cited studies (a study's range where it gives no SD), measured along the
centreline as our ``length_mm``: Rai et al. 2013 (CTA, 100 patients): ICA from the proximal cavernous
segment to the terminus 33.1 +- 6.1 mm, MCA (M1, origin to the M2 origin) 22.5 +- 8.1 mm; Rai et al.
2013, posterior circulation (CTA, 100 patients): intracranial vertebral artery (V4) 40 +- 10.6 mm,
basilar artery 27.3 +- 5.7 mm; Choudhry et al. 2016 (CTA, 100 patients): cervical ICA (bifurcation to
skull base) 86 +- 14 mm (right); MR angiography of the anterior communicating artery complex (200
adults): A1 13.5 +- 3.48 mm, A2 23.4 +- 3.94 mm (right); Dzierzanowski et al. 2014 (CTA, 100 patients):
PCoA 14.48 +- 3.47 mm (right); Uz 2019 (40 cadaveric PCAs): P1 6.8 mm, range 3-12; superior sagittal
sinus 25.6 +- 1.6 cm (venous CTA of 30 patients, Surg Radiol Anat 2011); straight sinus 43.6 +- 6.37, vein
of Galen 9.30 +- 4.76 and internal cerebral vein 36.86 +- 3.74 mm (Hou et al. 2021, CTA, 100 patients); left main coronary
artery 7.37 +- 4.2 mm (van Zandvoort et al. 2018, IVUS, 254 patients) and 10.5 +- 5.3 mm
(Medrano-Gracia et al. 2016, CTA atlas, 300 adults); the other coronary arteries from a cadaver series
of 20 hearts (a weak source, docs/vessels.md section 4): LAD 85.4 +- 17.8, LCx 45.1 +- 17.9, RCA
124.3 +- 35.3, posterior descending 54.5 +- 10.1, acute marginal 42.4 +- 11.6, obtuse marginal
40.3 +- 16.4, diagonal 26.6 +- 12.4 mm.
"""

from __future__ import annotations

import numpy as np
import pytest

from vessel_models import morphometrics as m
from vessel_models.generators import generate

SEEDS = range(4)


def _sd2(mean: float, sd: float) -> tuple[float, float]:
    return mean - 2 * sd, mean + 2 * sd


CEREBRAL_LENGTHS_MM = {  # published segment -> ((our segments summed), mean, (low, high))
    "ICA cavernous -> terminus": (("ICA_cavernous", "ICA_supraclinoid"), 33.1, _sd2(33.1, 6.1)),
    "M1": (("M1",), 22.5, _sd2(22.5, 8.1)),
    "intracranial VA": (("VA_V4",), 40.0, _sd2(40.0, 10.6)),
    "BA": (("BA",), 27.3, _sd2(27.3, 5.7)),
    "cervical ICA": (("ICA_cervical",), 86.0, _sd2(86.0, 14.0)),
    "A1": (("A1",), 13.5, _sd2(13.5, 3.48)),
    "A2": (("A2",), 23.4, _sd2(23.4, 3.94)),
    "PCoA": (("PCoA",), 14.48, _sd2(14.48, 3.47)),
    "P1": (("P1",), 6.8, (3.0, 12.0)),  # a range, no SD
    "superior sagittal sinus": (("SSS_ant", "SSS_post"), 256.0, _sd2(256.0, 16.0)),
    "straight sinus": (("StS",), 43.6, _sd2(43.6, 6.37)),
    "vein of Galen": (("VG",), 9.30, _sd2(9.30, 4.76)),
    "internal cerebral vein": (("ICV",), 36.86, _sd2(36.86, 3.74)),
}
LEFT_MAIN_MM = ((7.37, 4.2), (10.5, 5.3))
CORONARY_LENGTHS_MM = {  # segment -> ((mean, SD), dominances it applies to); cadaver series of 20 hearts
    "LAD": ((85.4, 17.8), ("right", "left")),
    "LCx": ((45.1, 17.9), ("right",)),  # a dominant LCx runs on to the crux
    "RCA": ((124.3, 35.3), ("right",)),  # a non-dominant RCA ends before the crux
    "PDA": ((54.5, 10.1), ("right", "left")),
    "AM": ((42.4, 11.6), ("right", "left")),
    "OM1": ((40.3, 16.4), ("right", "left")), "OM2": ((40.3, 16.4), ("right", "left")),
    "D1": ((26.6, 12.4), ("right", "left")), "D2": ((26.6, 12.4), ("right", "left")),
}


def _lengths(named: dict, parts: tuple[str, ...]) -> list[float]:
    if all(p in named for p in parts):  # unpaired segment (BA)
        return [sum(named[p]["length_mm"] for p in parts)]
    sides = [s for s in ("L", "R") if all(f"{p}_{s}" in named for p in parts)]  # absent variants left out
    return [sum(named[f"{p}_{side}"]["length_mm"] for p in parts) for side in sides]


def test_cerebral_segment_lengths_within_published_morphometry():
    seen = {k: [] for k in CEREBRAL_LENGTHS_MM}
    for seed in SEEDS:
        named = m.named_segments(generate("cow", seed, distal_iterations=1, vein_iterations=1))
        for key, (parts, _, _) in CEREBRAL_LENGTHS_MM.items():
            seen[key] += _lengths(named, parts)
    for key, (_, mean, (low, high)) in CEREBRAL_LENGTHS_MM.items():
        values = np.asarray(seen[key])
        assert values.size >= len(SEEDS) and np.all((low <= values) & (values <= high)), (key, values)
        assert abs(values.mean() - mean) <= (high - low) / 4, (key, values.mean())  # centred (1 SD), not at an edge


@pytest.mark.parametrize("dominance", ["right", "left"])
def test_left_main_length_within_ivus_and_ct_morphometry(dominance):
    lengths = np.array([m.named_segments(generate("coronary", seed, side="both", dominance=dominance,
                                                  distal_iterations=0))["LM"]["length_mm"] for seed in SEEDS])
    for mean, sd in LEFT_MAIN_MM:
        assert np.all(np.abs(lengths - mean) <= 2 * sd), lengths
    assert np.ptp(lengths) > 1.0  # varies between patients


@pytest.mark.parametrize("dominance", ["right", "left"])
def test_coronary_segment_lengths_within_cadaver_morphometry(dominance):
    named = [m.named_segments(generate("coronary", seed, side="both", dominance=dominance, distal_iterations=0))
             for seed in SEEDS]
    for name, ((mean, sd), dominances) in CORONARY_LENGTHS_MM.items():
        if dominance in dominances:
            lengths = np.array([n[name]["length_mm"] for n in named])
            assert np.all(np.abs(lengths - mean) <= 2 * sd), (name, lengths)
