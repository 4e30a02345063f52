"""Pictures people look at.

``ddsa_sim.viz.figures``  PNG images, image grids and contact sheets with shared display windows
                          (numpy + Pillow; matplotlib only for grids).
``ddsa_sim.viz.scene3d``  3D pictures of an imaging setup (pyvista): CT, vessels, source, detector.

Import the module you need; this package imports neither (pyvista and matplotlib are heavy).
"""

__all__: list[str] = []
