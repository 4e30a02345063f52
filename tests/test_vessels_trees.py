"""VesselTree validation, geometry helpers and exact VTP / JSON round trips."""

import json

import numpy as np
import pytest

from vessel_models import VesselInputError, VesselTree
from vessel_models.io import load_json, load_tree, load_vtp, save_json, save_tree, save_vtp
from vessel_models.lsystem import generate_lsystem


def _y_tree():
    pos = [[0, 0, 0], [0, 0, 10], [3, 0, 14], [-4, 0, 13], [3, 0, 20]]
    return VesselTree(pos, [2.0, 2.0, 1.5, 1.2, 1.0], [-1, 0, 1, 1, 2], [0, 0, 1, 2, 1], [0, 0, 1, 1, 1], {"labels": {1: "left"}})


def test_queries_on_hand_built_tree():
    t = _y_tree()
    assert t.n_nodes == 5
    assert t.edges().tolist() == [[0, 1], [1, 2], [1, 3], [2, 4]]
    assert t.children(1) == [2, 3]
    assert t.children(4) == []
    np.testing.assert_allclose(t.path_length_from_root_mm(), [0, 10, 15, 15, 21])
    assert t.total_length_mm() == pytest.approx(10 + 5 + 5 + 6)
    lo, hi = t.bounds_mm()
    np.testing.assert_allclose(lo, [-5.2, -2.0, -2.0])
    np.testing.assert_allclose(hi, [4.5, 2.0, 21.0])
    p0, p1, r0, r1 = t.segments()
    np.testing.assert_array_equal(p1[2], [-4, 0, 13])
    np.testing.assert_array_equal(r0, [2.0, 2.0, 2.0, 1.5])
    np.testing.assert_array_equal(r1, [2.0, 1.5, 1.2, 1.0])
    assert t.labels == {1: "left"}
    np.testing.assert_allclose(t.root_direction(5.0), [0, 0, 1])  # the first edge reaches 5 mm
    # past the bifurcation, along the wider child (node 2, radius 1.5, not node 3): to (3, 0, 14)
    np.testing.assert_allclose(t.root_direction(12.0), np.array([3.0, 0.0, 14.0]) / np.hypot(3.0, 14.0))
    with pytest.raises(VesselInputError, match="no extent at its root"):
        VesselTree([[0, 0, 0], [0, 0, 0]], [1.0, 1.0], [-1, 0], [0, 0], [0, 0]).root_direction(5.0)


def test_node_labels_carry_a_named_branch_down_its_unlabelled_twigs():
    """Branch 0 "CCA" (nodes 0-1), branch 1 unlabelled, grown from it (2-3), branch 2 "ECA" (4) and its unlabelled
    twig, branch 3 (5); a tree without labels: "" everywhere."""
    pos = np.zeros((6, 3))
    pos[:, 0] = np.arange(6)
    tree = VesselTree(pos, np.ones(6), np.array([-1, 0, 1, 2, 1, 4]), np.array([0, 0, 1, 1, 2, 3]),
                      np.zeros(6, int), {"labels": {"0": "CCA", "2": "ECA"}})
    assert tree.node_labels().tolist() == ["CCA", "CCA", "CCA", "CCA", "ECA", "ECA"]
    unnamed = VesselTree(pos[:2], np.ones(2), np.array([-1, 0]), np.array([0, 1]), np.zeros(2, int))
    assert unnamed.node_labels().tolist() == ["", ""]


def test_transformed_scales_radii_by_cube_root_det():
    t = _y_tree()
    m = np.diag([2.0, 2.0, 2.0, 1.0])
    m[:3, 3] = [1, 2, 3]
    u = t.transformed(m)
    np.testing.assert_allclose(u.positions_mm, t.positions_mm * 2 + [1, 2, 3])
    np.testing.assert_allclose(u.radii_mm, t.radii_mm * 2.0)
    rot = np.eye(4)
    rot[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    np.testing.assert_allclose(t.transformed(rot).radii_mm, t.radii_mm)
    np.testing.assert_allclose(t.translated([1, 0, 0]).positions_mm[:, 0], t.positions_mm[:, 0] + 1)
    assert np.array_equal(t.positions_mm[0], [0, 0, 0])  # original untouched
    with pytest.raises(VesselInputError):
        t.transformed(np.zeros((4, 4)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(positions_mm=np.zeros((0, 3)), radii_mm=[], parents=[], branch_ids=[], generations=[]), "empty"),
        (dict(positions_mm=np.zeros((2, 3)), radii_mm=[1, 1], parents=[-1, -1], branch_ids=[0, 0], generations=[0, 0]),
         "disconnected"),
        (dict(positions_mm=np.zeros((3, 3)), radii_mm=[1, 1, 1], parents=[-1, 2, 1], branch_ids=[0] * 3, generations=[0] * 3),
         "parent"),
        (dict(positions_mm=np.zeros((2, 3)), radii_mm=[1, 0], parents=[-1, 0], branch_ids=[0, 0], generations=[0, 0]), "radii"),
        (dict(positions_mm=[[0, 0, np.nan], [0, 0, 1]], radii_mm=[1, 1], parents=[-1, 0], branch_ids=[0, 0], generations=[0, 0]),
         "non-finite"),
        (dict(positions_mm=np.zeros((2, 2)), radii_mm=[1, 1], parents=[-1, 0], branch_ids=[0, 0], generations=[0, 0]), "shape"),
        (dict(positions_mm=np.zeros((2, 3)), radii_mm=[1, 1, 1], parents=[-1, 0], branch_ids=[0, 0], generations=[0, 0]),
         "radii_mm"),
        (dict(positions_mm=np.zeros((2, 3)), radii_mm=[1, 1], parents=[0, 0], branch_ids=[0, 0], generations=[0, 0]), "root"),
    ],
)
def test_invalid_trees_rejected_with_one_line_error(kwargs, match):
    with pytest.raises(VesselInputError, match=match) as exc:
        VesselTree(**kwargs, metadata={})
    assert "\n" not in str(exc.value)


def test_vtp_round_trip_exact_and_readable_by_pyvista(tmp_path):
    import pyvista as pv

    t = generate_lsystem(7, stenosis_probability=0.3, aneurysm_probability=0.3)
    path = save_vtp(t, tmp_path / "tree.vtp")
    u = load_vtp(path)
    assert u == t
    for name in ("positions_mm", "radii_mm", "parents", "branch_ids", "generations"):
        assert np.array_equal(getattr(u, name), getattr(t, name)), name
    poly = pv.read(str(path))
    assert poly.n_points == t.n_nodes
    np.testing.assert_array_equal(poly.point_data["radius_mm"], t.radii_mm)
    # the polylines cover every edge exactly once
    cells, edges, i = np.asarray(poly.lines), set(), 0
    while i < len(cells):
        k = cells[i]
        ids = cells[i + 1 : i + 1 + k]
        edges.update(zip(ids[:-1].tolist(), ids[1:].tolist()))
        i += k + 1
    assert edges == set(map(tuple, t.edges().tolist()))
    assert not list(tmp_path.glob(".*"))  # no temp files left behind


def test_vtp_without_parent_array_is_rebuilt_from_lines(tmp_path):
    import pyvista as pv

    t = _y_tree()
    poly = pv.PolyData()
    poly.points = t.positions_mm
    poly.lines = np.array([3, 0, 1, 2, 2, 2, 4, 2, 1, 3])
    poly.point_data["radius_mm"] = t.radii_mm
    poly.save(str(tmp_path / "foreign.vtp"))
    u = load_vtp(tmp_path / "foreign.vtp")
    assert u.n_nodes == 5
    assert np.array_equal(u.positions_mm[0], [0, 0, 0])  # widest end point is the root
    assert u.total_length_mm() == pytest.approx(t.total_length_mm())


def test_json_round_trip_exact_and_deterministic_bytes(tmp_path):
    t = generate_lsystem(11)
    a = save_json(t, tmp_path / "a.json")
    b = save_json(generate_lsystem(11), tmp_path / "b.json")
    assert a.read_bytes() == b.read_bytes()
    assert load_json(a) == t
    assert load_tree(a) == t
    data = json.loads(a.read_text())
    assert data["metadata"]["generator"] == "lsystem" and data["metadata"]["seed"] == 11


def test_load_errors(tmp_path):
    with pytest.raises(VesselInputError, match="not found"):
        load_tree(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(VesselInputError, match="JSON"):
        load_json(bad)
    with pytest.raises(VesselInputError, match="unsupported"):
        save_tree(_y_tree(), tmp_path / "x.stl")
    disconnected = {"positions_mm": [[0, 0, 0], [1, 0, 0]], "radii_mm": [1, 1], "parents": [-1, -1]}
    (tmp_path / "d.json").write_text(json.dumps(disconnected))
    with pytest.raises(VesselInputError, match="disconnected"):
        load_json(tmp_path / "d.json")


def test_png_colour_scale_leaves_virtual_connectors_out(tmp_path, monkeypatch):
    """A template's 1 um virtual connectors had started the radius colour bar at 0.001 mm (stats leave them out)."""
    pv = pytest.importorskip("pyvista")
    from vessel_models.render import render_tree_png
    from vessel_models.tree import TreeBuilder

    b = TreeBuilder()
    left, virtual, right = b.new_branch(0, "LCA"), b.new_branch(0, "virtual"), b.new_branch(0, "RCA")
    root = b.add_node([0, 0, 0], 2.0, -1, left)
    b.add_node([0, 0, 10], 1.0, root, left)
    joint = b.add_node([0, 5, 0], 1e-3, root, virtual)
    b.add_node([0, 15, 0], 1.5, b.add_node([0, 6, 0], 1.5, joint, right), right)
    tree = b.build({"virtual_branches": [virtual]})
    actors = []
    add_mesh = pv.Plotter.add_mesh
    monkeypatch.setattr(pv.Plotter, "add_mesh", lambda self, *a, **k: actors.append(add_mesh(self, *a, **k)) or actors[-1])
    if render_tree_png(tree, tmp_path / "t.png", size=(64, 64)) != "pyvista":
        pytest.skip("no off-screen VTK here")
    assert tuple(actors[0].mapper.scalar_range) == (1.0, 2.0)  # the vessels' radii, not the connector's
