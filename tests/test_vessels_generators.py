"""Generators: determinism, sizes, CoW variant prevalences, coronary, colonisation, bolus, registry."""

import math

import numpy as np
import pytest

from vessel_models import VesselInputError
from vessel_models import morphometrics as m
from vessel_models.bolus import contrast_fraction, contrast_sequence, edge_fraction
from vessel_models.colonize import ellipsoid_mask, grow_in_mask
from vessel_models.generators import GENERATORS, generate, parse_params
from vessel_models.io import tree_to_json_string
from vessel_models.lsystem import PUBLISHED_GRID_AXES, published_grid
from vessel_models.willis import generate_willis


@pytest.mark.parametrize("model", sorted(GENERATORS))
def test_same_seed_same_bytes_different_seed_different_tree(model):
    kw = {"n_attractors": "400"} if model == "colonize" else {}
    a = tree_to_json_string(generate(model, 3, **kw))
    b = tree_to_json_string(generate(model, 3, **kw))
    c = tree_to_json_string(generate(model, 4, **kw))
    assert a == b
    assert a != c


def test_lsystem_default_scale():
    for seed in range(5):
        t = generate("lsystem", seed)
        assert 50 <= t.n_nodes <= 500
        lo, hi = t.bounds_mm()
        assert 20 <= (hi - lo).max() <= 150
        assert t.radii_mm[0] == pytest.approx(1.5)
        assert t.radii_mm.min() >= 0.2


def test_lsystem_pathologies_and_min_radius():
    t = generate("lsystem", 1, stenosis_probability="1", min_radius_mm="0.4")
    assert len(t.metadata["stenoses"]) > 0
    assert t.radii_mm.min() < 0.4  # the stenoses narrow below the healthy minimum
    healthy = generate("lsystem", 1, min_radius_mm="0.4")
    assert healthy.radii_mm.min() >= 0.4


def test_published_grid_is_1584_designs():
    grid = published_grid(distinct=False)
    assert [len(v) for v in PUBLISHED_GRID_AXES.values()] == [11, 8, 6, 3]
    assert len(grid) == 1584
    assert len({tuple(sorted(d.items())) for d in grid}) == 1584
    d = grid[1583]
    t = generate("lsystem", **{k: str(v) for k, v in d.items() if k != "seed"}, seed=d["seed"])
    assert t.metadata["params"]["iterations"] == d["iterations"]


def test_cow_labels_and_variant_frequencies_within_3_sigma():
    t = generate_willis(0, distal_iterations=0, veins=False, a1_hypoplastic_prob=0, a1_absent_prob=0, pcoa_hypoplastic_prob=0,
                        pcoa_absent_prob=0, fetal_partial_prob=0, fetal_full_prob=0, acoa_absent_prob=0)
    names = set(t.labels.values())
    for s in ("L", "R"):
        assert {f"ICA_cavernous_{s}", f"A1_{s}", f"A2_{s}", f"M1_{s}", f"M2s_{s}", f"P1_{s}", f"P2_{s}",
                f"PCoA_{s}", f"VA_{s}", f"CCA_{s}"} <= names
    assert {"BA", "ACoA"} <= names
    # the three other inflows (right CCA, both vertebrals) hang from the root on virtual connectors
    assert len(t.metadata["virtual_branches"]) == 3
    p = dict(a1_hypoplastic_prob=0.15, pcoa_absent_prob=0.3, pcoa_hypoplastic_prob=0.2, fetal_partial_prob=0.12,
             fetal_full_prob=0.05)
    n = 400
    counts = {"A1_L": 0, "PCoA_L": 0, "PCoA_hypo_R": 0, "P1_L": 0, "P1_full_R": 0}
    for seed in range(n):
        t = generate_willis(seed, distal_iterations=0, veins=False, **p)  # the arteries' variants
        v = t.metadata["variants"]
        counts["A1_L"] += v["A1_L"] == "hypoplastic"
        counts["PCoA_L"] += v["PCoA_L"] == "absent"
        counts["PCoA_hypo_R"] += v["PCoA_R"] == "hypoplastic"
        counts["P1_L"] += v["P1_L"] == "fetal_partial"
        counts["P1_full_R"] += v["P1_R"] == "fetal_full"
        # the geometry follows the draw
        labels = set(t.labels.values())
        assert ("PCoA_L" in labels) == (v["PCoA_L"] != "absent")
        assert ("P1_R" in labels) == (v["P1_R"] != "fetal_full")
        assert ("A1_L" in labels) == (v["A1_L"] != "absent")
    fetal = 0.12 + 0.05
    expected = {"A1_L": 0.15, "PCoA_L": (1 - fetal) * 0.3, "PCoA_hypo_R": (1 - fetal) * 0.2, "P1_L": 0.12, "P1_full_R": 0.05}
    for k, q in expected.items():
        sigma = math.sqrt(n * q * (1 - q))
        assert abs(counts[k] - n * q) <= 3 * sigma, (k, counts[k], n * q)


def test_cow_hypoplastic_and_fetal_radii():
    from vessel_models.willis import SEGMENT_DIAMETERS_MM as D

    t = generate_willis(1, distal_iterations=0, radius_jitter=0, a1_hypoplastic_prob=1.0, a1_absent_prob=0,
                        fetal_partial_prob=1.0, fetal_full_prob=0)
    r = {name: t.radii_mm[t.branch_ids == b].max() for b, name in t.labels.items()}
    assert r["A1_L"] == pytest.approx(0.4 * max(D["A1"]) / 2, rel=0.02)
    assert r["A2_L"] == pytest.approx(max(D["A2"]) / 2, rel=0.02)
    assert r["PCoA_L"] == pytest.approx(r["P2_L"], rel=0.02)  # fetal PCA fed by a wide PCoA
    assert r["P1_L"] == pytest.approx(0.4 * max(D["P1"]) / 2, rel=0.02)


def test_cow_posterior_fed_by_vertebrals_when_pcoas_absent():
    t = generate_willis(2, distal_iterations=0, pcoa_absent_prob=1.0, pcoa_hypoplastic_prob=0, fetal_partial_prob=0,
                        fetal_full_prob=0)
    names = set(t.labels.values())
    assert "PCoA_L" not in names and "PCoA_R" not in names
    # the basilar tip is reached from a vertebral, not through a virtual shortcut
    ba = next(b for b, n in t.labels.items() if n == "BA")
    node = int(np.nonzero(t.branch_ids == ba)[0][0])
    path = []
    while node >= 0:
        path.append(t.labels.get(int(t.branch_ids[node]), "?"))
        node = int(t.parents[node])
    assert any(p.startswith("VA_V4") for p in path)
    assert t.radii_mm[np.isin(t.branch_ids, t.metadata["virtual_branches"])].max() <= 1e-3


def test_cow_with_distal_branching_is_head_sized():
    t = generate("cow", 5)
    lo, hi = t.bounds_mm()
    assert (hi - lo)[0] < 170 and (hi - lo)[1] < 210  # head-wide and head-long; the neck hangs below
    centre, axes = np.array(t.metadata["brain_centre_mm"]), np.array(t.metadata["brain_semi_axes_mm"])
    for name in ("M1_L", "M1_R", "A2_L", "A2_R", "P2_L", "P2_R"):  # cerebral arteries with their cortical trees
        bid = next(b for b, n in t.labels.items() if n == name)
        sub = t.subtree(int(np.nonzero(t.branch_ids == bid)[0][0]))
        assert sub.n_nodes > 50, name
        rho = np.sqrt((((sub.positions_mm - centre) / axes) ** 2).sum(axis=1))
        assert rho.max() < 1.0, name  # inside the brain
        small = sub.radii_mm < 0.5
        if name.startswith("A"):  # ACA branches run on the medial surface of the hemisphere
            assert np.median(np.abs(sub.positions_mm[small, 0])) < 8.0, name
        else:  # MCA / PCA branches run over the convexity, near the brain surface
            assert np.median(rho[small]) > 0.85, name
    assert m.strahler_orders(t)[0] >= 3


@pytest.mark.parametrize("side, names", [("left", {"LM", "LAD", "LCx"}), ("right", {"RCA", "PDA"}), ("both", {"LAD", "RCA"})])
def test_coronary_courses_lie_on_heart(side, names):
    t = generate("coronary", 0, side=side, distal_iterations="0", size_jitter="0")
    assert names <= set(t.labels.values())
    # main courses are on the epicardium: distance from the heart centre is about the ellipsoid size
    from vessel_models.coronary import heart_rotation

    local = t.positions_mm @ heart_rotation()  # LPS -> heart frame (centre at origin)
    a, b, c = t.metadata["heart_semi_axes_mm"]
    for bid, name in t.labels.items():
        if name in ("LAD", "LCx", "RCA", "PDA"):
            q = local[t.branch_ids == bid]
            if name == "RCA":  # the ostial part leaves the aortic root before reaching the AV groove
                q = q[len(q) // 4 :]
            rho = np.sqrt((q[:, 0] / a) ** 2 + (q[:, 1] / b) ** 2 + (q[:, 2] / c) ** 2)
            assert np.all((rho > 0.98) & (rho < 1.12)), name


def test_colonisation_fills_mask_with_murray_radii():
    mask, aff = ellipsoid_mask((25, 15, 15), 1.0)
    t = grow_in_mask(mask, aff, seed=1, n_attractors=800, murray_exponent=2.7)
    assert t.n_nodes > 100
    inv = np.linalg.inv(aff)
    ijk = np.rint(t.positions_mm @ inv[:3, :3].T + inv[:3, 3]).astype(int)
    assert mask[tuple(ijk.T)].all()
    assert np.abs(m.murray_residuals(t, 2.7)).max() < 1e-12
    lo, hi = t.bounds_mm()
    assert hi[0] - lo[0] > 35  # grew across most of the 50 mm long axis
    with pytest.raises(VesselInputError, match="no voxels"):
        grow_in_mask(np.zeros((4, 4, 4), bool), np.eye(4), seed=0)


def test_bolus_formula_and_filling_front():
    t = generate("lsystem", 0)
    d = t.path_length_from_root_mm()
    v, sig, time_s = 50.0, 0.3, 0.8
    f = contrast_fraction(t, time_s, v, sig, "bolus")
    np.testing.assert_allclose(f, np.exp(-0.5 * ((time_s - d / v) / sig) ** 2))
    g = contrast_fraction(t, time_s, v, sig, "filling")
    reached = d / v <= time_s
    assert reached.any() and (~reached).any()
    assert np.all(g[reached] == 1.0)
    assert np.all(g[~reached] < 1.0)
    seq = contrast_sequence(t, [0.0, 0.5, 1.0, 5.0], v, sig, "filling")
    assert seq.shape == (4, t.n_nodes)
    assert np.all(np.diff(seq, axis=0) >= 0)  # a filling front never empties
    assert edge_fraction(t, g).shape == (t.n_nodes - 1,)
    with pytest.raises(VesselInputError, match="velocity"):
        contrast_fraction(t, 1.0, velocity_mm_per_s=0)
    with pytest.raises(VesselInputError, match="mode"):
        contrast_fraction(t, 1.0, mode="wave")


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generator_refuses_unknown_parameter(name):
    # called directly, not through generate(): each generator names itself and lists its valid fields
    with pytest.raises(VesselInputError, match=rf"^unknown {name} parameter\(s\) bogus; valid: \w"):
        GENERATORS[name](0, bogus=1)


def test_registry_string_params_and_errors():
    t = generate("lsystem", 0, iterations="3", origin_mm="1,2,3", tortuosity_deg="0")
    assert t.metadata["params"]["iterations"] == 3
    np.testing.assert_array_equal(t.positions_mm[0], [1, 2, 3])
    assert parse_params(["a=1", "b = x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(VesselInputError, match="unknown lsystem parameter.*bogus"):
        generate("lsystem", 0, bogus="1")
    with pytest.raises(VesselInputError, match="iterations"):
        generate("lsystem", 0, iterations="three")
    with pytest.raises(VesselInputError, match="unknown vessel model"):
        generate("spaghetti", 0)
    with pytest.raises(VesselInputError, match="root_diameter_mm"):
        generate("lsystem", 0, root_diameter_mm="-1")
    with pytest.raises(VesselInputError, match="side"):
        generate("coronary", 0, side="middle")
    with pytest.raises(VesselInputError, match="key=value"):
        parse_params(["novalue"])


def _float_fields(model: str) -> list[tuple[str, str]]:
    """(field, value) pairs: every float field of ``model`` at infinity, every float tuple field with one."""
    import dataclasses

    from vessel_models.generators import PARAMS

    out = []
    for f in dataclasses.fields(PARAMS[model]):
        if isinstance(f.default, float):
            out.append((f.name, "inf"))
        elif isinstance(f.default, tuple) and f.default and isinstance(f.default[0], float):
            out.append((f.name, ",".join(["inf"] + ["1"] * (len(f.default) - 1))))
    return out


@pytest.mark.parametrize("model, name, value", [(m, n, v) for m in sorted(GENERATORS) for n, v in _float_fields(m)])
def test_every_float_parameter_must_be_finite(model, name, value):
    """``root_diameter_mm=inf`` passed ``> 0`` and failed deep inside the generator (OverflowError)."""
    with pytest.raises(VesselInputError, match=f"^{model} parameter {name}=.*inf.* must be finite$"):
        generate(model, 0, **{name: value})


@pytest.mark.parametrize("d0, d", [(60.0, 2.0), (10.0, 1.5), (30.0, 1.5), (10.0, 1.2)])
def test_iterations_beyond_the_design_depth_change_nothing(d0, d):
    """The 0.2 mm ``min_radius_mm`` stop caps a design's depth: ``design_depth`` bounds every tree's bifurcation
    levels, and more iterations than it give the same tree (d0 60, d 2: 6 or 13 iterations, 102 nodes both)."""
    from vessel_models.lsystem import design_depth, grammar_to_params

    point = grammar_to_params(d0, 6, 9.0, d)
    depth = design_depth(point["root_diameter_mm"], point["murray_exponent"])
    for seed in range(8):
        tree = generate("lsystem", seed, **point)
        assert tree.generations.max() <= depth
        if depth + 1 <= 13:
            deeper = tree_to_json_string(generate("lsystem", seed, **{**point, "iterations": 13}))
            same = tree_to_json_string(generate("lsystem", seed, **{**point, "iterations": max(depth + 1, 6)}))
            assert deeper.replace('"iterations":13', "") == same.replace(f'"iterations":{max(depth + 1, 6)}', "")


def test_published_grid_draws_distinct_designs_that_branch():
    """``params: published-grid`` had drawn from all 1,584 points: 612 repeat an earlier design (iterations past its
    depth) and 6 branch once at most (d0 10, d 2)."""
    from vessel_models.lsystem import design_depth

    grid = published_grid()
    assert len(grid) == 966 and [p["seed"] for p in grid] == list(range(966))
    designs = set()
    for p in grid:
        depth = design_depth(p["root_diameter_mm"], p["murray_exponent"])
        assert depth >= 2
        designs.add((p["root_diameter_mm"], min(p["iterations"], depth), p["length_diameter_ratio"],
                     p["murray_exponent"]))
    assert len(designs) == len(grid)
    full = published_grid(distinct=False)
    assert all(p in [{**q, "seed": p["seed"]} for q in full] for p in grid[:50])  # points of the paper's grid
    # the tester's pair: d0 60, d 2, epsilon 9 at 6 and at 13 iterations: one design, drawn once
    same = [p for p in grid if (p["root_diameter_mm"], p["length_diameter_ratio"], p["murray_exponent"]) == (6.0, 9.0, 1.0)]
    assert [p["iterations"] for p in same] == [6]
