"""ddsa_sim.viz.figures: figures written whole, at the asked size."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from ddsa_sim.viz.figures import image_grid, save_figure  # noqa: E402


def test_save_figure_writes_the_figure_at_its_dpi_and_leaves_nothing_else(tmp_path):
    fig = plt.figure(figsize=(3.0, 2.0))
    fig.add_subplot().plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "f.png", dpi=50)
    plt.close(fig)
    assert path == tmp_path / "f.png" and [p.name for p in tmp_path.iterdir()] == ["f.png"]
    assert Image.open(path).size == (150, 100)  # inches x dpi


def test_image_grid_writes_one_png(tmp_path):
    rows = [[np.zeros((8, 8)), np.eye(8)]]
    path = image_grid(rows, tmp_path / "g.png", titles=[["zeros", "eye"]])
    assert [p.name for p in tmp_path.iterdir()] == ["g.png"] and Image.open(path).format == "PNG"


def test_pictures_leave_the_callers_matplotlib_backend_alone(tmp_path):
    """QA found: writing a picture switched a Jupyter kernel's backend to Agg (`matplotlib.use`), so the
    notebook's later figures were never shown."""
    from ddsa_sim.export.preview import write_grid  # noqa: F401  (imports as the export does)
    from vessel_models.generators import generate
    from vessel_models.render import _render_matplotlib

    matplotlib.use("svg")
    try:
        image_grid([[np.zeros((8, 8)), np.eye(8)]], tmp_path / "g.png", suptitle="t")
        _render_matplotlib(generate("lsystem", 0, iterations=2), str(tmp_path / "tree.png"), (200, 160), "tree")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use("Agg")
    assert Image.open(tmp_path / "tree.png").size == (200, 160)


def test_a_long_title_is_wrapped_inside_the_picture(tmp_path):
    """QA found: a `dsa` strip's one-line title ran past both edges of the picture, cutting off its orientation
    labels (``down: F``)."""
    title = "  ".join(f"part{i}=value{i}" for i in range(30)) + "  (image right: P, down: F)"
    path = image_grid([[np.zeros((8, 8)), np.eye(8)]], tmp_path / "g.png", suptitle=title)
    grey = np.asarray(Image.open(path).convert("L"))
    assert grey[:, :3].min() == 255 and grey[:, -3:].min() == 255  # no letter at the left or right edge
    assert (grey[: grey.shape[0] // 3] < 128).any()  # the title is drawn, above the images
