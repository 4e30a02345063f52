"""Architecture: the import graph of ``ddsa_sim`` and ``vessel_models`` follows docs/architecture.md.

Every module is parsed with :mod:`ast`; module-level and function-level imports count (a lazy import
is still a dependency), ``if TYPE_CHECKING:`` blocks do not (annotations only, never executed).
Relative imports and ``from pkg import submodule`` resolve to the module really imported;
``importlib.import_module("literal")`` / ``__import__("literal")`` count too, imports by a computed
name cannot be seen. The checker fails on

(a) an import cycle between modules (the cycle and the file:line of each arrow are reported),
(b) an import against :data:`LAYERS`, the one table of allowed directions (file:line and the rule),
    or a module that belongs to no package of the table, and
(c) ``from module import _private`` across modules (a helper two modules share gets a public name).

``docs/architecture.md`` carries the same table; :func:`test_docs_mirror_the_rules` keeps the two equal.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: The packages whose imports are checked (top-level names).
CHECKED = ("ddsa_sim", "vessel_models")

#: Modules at the root of ``ddsa_sim`` that form the neutral package ``root``: they import no subpackage.
ROOT_MODULES = ("ddsa_sim", "ddsa_sim._openmp", "ddsa_sim._bitcast", "ddsa_sim.checks", "ddsa_sim.files")

#: THE rule table: package -> the packages it may import besides itself. A package is ``root`` (the
#: modules above), ``vessel_models`` or a subpackage of ``ddsa_sim`` (``ddsa_sim/<name>/`` or, until it
#: moves, ``ddsa_sim/<name>.py``). An entry ``pkg.module`` allows that one module of ``pkg`` only.
#: Nobody lists ``cli``: it is the only top of the house. Mirrored in docs/architecture.md.
LAYERS: dict[str, tuple[str, ...]] = {
    "root": ("vessel_models",),
    "vessel_models": (),
    "geometry": ("root",),
    "volumes": ("root",),
    "physics": ("root",),
    "projector": ("root", "geometry", "volumes", "physics"),
    "scene": ("root", "geometry", "volumes", "physics", "projector", "vessel_models"),
    "export": ("root", "geometry", "volumes", "physics", "projector", "scene", "vessel_models"),
    "training": ("root", "geometry", "volumes", "physics", "scene", "vessel_models", "export.format", "export.store",
                 "angio"),
    "viz": ("root", "geometry", "volumes", "physics", "projector", "scene", "vessel_models"),
    "compat": ("root", "geometry", "volumes", "physics", "projector", "scene", "viz"),
    "angio": ("root",),
    "cli": ("root", "geometry", "volumes", "physics", "projector", "scene", "export", "training", "viz", "compat",
            "vessel_models", "angio"),
}


# ----------------------------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class Import:
    """One import statement's arrow: ``source`` imports ``target`` at ``path:line``."""

    source: str
    target: str
    path: str
    line: int
    private: tuple[str, ...] = ()  # names starting with "_" taken from the target


def module_files(root: Path, packages: tuple[str, ...] = CHECKED) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of ``packages`` under ``root``."""
    found = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _ImportVisitor(ast.NodeVisitor):
    """Collect ``(dotted name, is 'from' import, names, level, line)`` of every executed import."""

    def __init__(self) -> None:
        self.found: list[tuple[str, tuple[str, ...], int, int]] = []

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:  # the else branch runs
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name, (), 0, node.lineno))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.found.append((node.module or "", tuple(a.name for a in node.names), node.level, node.lineno))

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if name in ("import_module", "__import__") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and not arg.value.startswith("."):
                self.found.append((arg.value, (), 0, node.lineno))
        self.generic_visit(node)


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a module of the tree (``a.b.C`` -> ``a.b``)."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path], root: Path) -> list[Import]:
    """The arrows from ``module`` to other modules of the tree (external imports dropped)."""
    visitor = _ImportVisitor()
    visitor.visit(ast.parse(path.read_text(), filename=str(path)))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    rel = path.relative_to(root).as_posix()
    arrows: dict[Import, None] = {}  # ordered set: `from m import a, b` is one arrow
    for name, names, level, line in visitor.found:
        if level:
            base_parts = package.split(".")[: len(package.split(".")) - (level - 1)]
            name = ".".join(base_parts + ([name] if name else []))
        # `from pkg import mod` imports the submodule pkg.mod; `from mod import f` imports mod
        targets: dict[str, list[str]] = {}
        for n in names or ("",):
            sub = f"{name}.{n}"
            if sub in modules:
                targets.setdefault(sub, [])
            else:
                targets.setdefault(name, []).extend([n] if n.startswith("_") and not n.startswith("__") else [])
        for target, private in targets.items():
            known = _known(target, modules)
            if known is not None and known != module:
                arrows[Import(module, known, rel, line, tuple(private))] = None
    return list(arrows)


def import_graph(root: Path, packages: tuple[str, ...] = CHECKED) -> tuple[dict[str, Path], list[Import]]:
    """All modules of ``packages`` under ``root`` and every import arrow between them."""
    modules = module_files(root, packages)
    arrows = [a for m, p in modules.items() for a in imports_of(m, p, modules, root)]
    return modules, arrows


# ------------------------------------------------------------------------------------------ rules
def package_of(module: str) -> str | None:
    """The :data:`LAYERS` package of a module, or None when the table has no place for it."""
    if module in ROOT_MODULES:
        return "root"
    top, _, rest = module.partition(".")
    if top != "ddsa_sim":
        return top if top in LAYERS else None
    sub = rest.partition(".")[0]
    return sub if sub in LAYERS and sub not in ("root", "vessel_models") else None


def _allowed(source_pkg: str, target: str, target_pkg: str) -> bool:
    for entry in LAYERS[source_pkg]:
        pkg, _, mod = entry.partition(".")
        if pkg == target_pkg and (not mod or target == f"ddsa_sim.{entry}" or target.startswith(f"ddsa_sim.{entry}.")):
            return True
    return False


def layer_violations(modules: dict[str, Path], arrows: list[Import], root: Path) -> list[str]:
    """One line per module outside the table and per arrow against it."""
    problems = [f"{path.relative_to(root).as_posix()}: module {m} belongs to no package of the layout table"
                for m, path in modules.items() if package_of(m) is None]
    for a in arrows:
        src, dst = package_of(a.source), package_of(a.target)
        if src is None or src == dst:
            continue  # an unplaced module is reported once above; inside one package anything goes
        if dst is None:
            why = f"'{a.target}' belongs to no package of the layout table"
        elif _allowed(src, a.target, dst):
            continue
        else:
            may = ", ".join(LAYERS[src]) or "nothing outside itself"
            why = f"{src} may import {may}; not {dst}" if dst != "cli" else "nothing imports cli (the only top)"
        problems.append(f"{a.path}:{a.line}: {a.source} imports {a.target}: {why}")
    return problems


def private_imports(arrows: list[Import]) -> list[str]:
    """One line per import of a private name (``_x``) from another module: shared helpers get a public name."""
    return [f"{a.path}:{a.line}: {a.source} imports private {', '.join(a.private)} from {a.target}: "
            "make it public in a module both may import" for a in arrows if a.private]


def _strongly_connected(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                components.append(sorted(comp))
    return components


def import_cycles(arrows: list[Import]) -> list[str]:
    """One line per knot of mutually importing modules: its shortest cycle with file:line of each arrow."""
    edges: dict[str, set[str]] = {}
    where: dict[tuple[str, str], Import] = {}
    for a in arrows:
        edges.setdefault(a.source, set()).add(a.target)
        where.setdefault((a.source, a.target), a)
    problems = []
    for comp in _strongly_connected(sorted(edges), edges):
        if len(comp) < 2:
            continue
        members = set(comp)
        start = comp[0]
        # breadth-first from start back to start inside the knot: its shortest cycle
        prev: dict[str, str] = {}
        frontier = [start]
        while start not in prev:
            nxt = []
            for node in frontier:
                for child in sorted(edges[node] & members):
                    if child not in prev:
                        prev[child] = node
                        nxt.append(child)
            frontier = nxt
        cycle = [start]
        while True:
            cycle.append(prev[cycle[-1]])
            if cycle[-1] == start:
                break
        cycle.reverse()
        lines = ", ".join(f"{where[(s, t)].path}:{where[(s, t)].line}" for s, t in zip(cycle, cycle[1:]))
        knot = f"; knot of {len(comp)} modules: {', '.join(comp)}" if len(comp) > len(cycle) - 1 else ""
        problems.append(f"import cycle {' -> '.join(cycle)} ({lines}){knot}")
    return problems


def check_tree(root: Path, packages: tuple[str, ...] = CHECKED) -> list[str]:
    """Every problem of the tree under ``root``: cycles, arrows against :data:`LAYERS`, private names."""
    modules, arrows = import_graph(root, packages)
    return import_cycles(arrows) + layer_violations(modules, arrows, root) + private_imports(arrows)


def rules_text() -> str:
    """:data:`LAYERS` as the plain-text block docs/architecture.md shows."""
    width = max(map(len, LAYERS))
    return "\n".join(f"{pkg:<{width}} -> {', '.join(allowed) or '(nothing)'}" for pkg, allowed in LAYERS.items())


# ------------------------------------------------------------------------------------------ tests
def test_tree_follows_the_layout():
    problems = check_tree(REPO)
    assert not problems, (f"{len(problems)} architecture problem(s) (rules: LAYERS in tests/test_architecture.py, "
                          "docs/architecture.md):\n  " + "\n  ".join(problems))


def test_docs_mirror_the_rules():
    doc = (REPO / "docs" / "architecture.md").read_text()
    assert rules_text() in doc, "docs/architecture.md must show LAYERS as:\n" + rules_text()
    assert all(f"`{m}`" in doc for m in ROOT_MODULES), "docs/architecture.md must name every root module"


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture()
def fake_tree(tmp_path: Path) -> Path:
    """A small tree that follows the layout: the checker must find nothing in it."""
    _write(tmp_path, {
        "vessel_models/__init__.py": "",
        "vessel_models/tree.py": "import numpy\n",
        "ddsa_sim/__init__.py": "class InputError(ValueError): ...\n",
        "ddsa_sim/_openmp.py": "import os\n",
        "ddsa_sim/physics/__init__.py": "from ddsa_sim.physics.spectra import Spectrum\n",
        "ddsa_sim/physics/spectra.py": "from ddsa_sim import InputError\nclass Spectrum: ...\n",
        "ddsa_sim/physics/noise.py": "from . import spectra\nfrom .spectra import Spectrum\n",
        "ddsa_sim/projector/__init__.py": "",
        "ddsa_sim/projector/projector.py": "from ..physics import spectra\nimport ddsa_sim._openmp\n",
        "ddsa_sim/projector/kernels_torch.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from ddsa_sim.projector.projector import Projector\n"
            "else:\n    import numpy\n"),
        "ddsa_sim/scene/__init__.py": "",
        "ddsa_sim/scene/builder.py": "from ddsa_sim.projector import projector\nfrom vessel_models.tree import x\n",
        "ddsa_sim/export/__init__.py": "",
        "ddsa_sim/export/format.py": "KEYS = ()\n",
        "ddsa_sim/export/runner.py": "def run():\n    from ddsa_sim.scene import builder\n",
        "ddsa_sim/training/__init__.py": "",
        "ddsa_sim/training/data.py": "from ddsa_sim.export.format import KEYS\nfrom ddsa_sim.export import format\n",
        "ddsa_sim/cli/__init__.py": "from importlib import import_module\n"
                                    "def main():\n    import_module('ddsa_sim.export.runner')\n",
    })
    return tmp_path


def test_checker_resolves_imports(fake_tree):
    modules, arrows = import_graph(fake_tree)
    got = {(a.source, a.target, a.line) for a in arrows}
    assert ("ddsa_sim.physics.noise", "ddsa_sim.physics.spectra", 1) in got  # from . import spectra (a submodule)
    assert ("ddsa_sim.physics.noise", "ddsa_sim.physics.spectra", 2) in got  # from .spectra import Spectrum
    assert ("ddsa_sim.projector.projector", "ddsa_sim.physics.spectra", 1) in got  # from ..physics import spectra
    assert ("ddsa_sim.projector.projector", "ddsa_sim._openmp", 2) in got
    assert ("ddsa_sim.physics.spectra", "ddsa_sim", 1) in got  # from ddsa_sim import InputError: the root
    assert ("ddsa_sim.scene.builder", "vessel_models.tree", 2) in got  # a name of a module: that module
    assert ("ddsa_sim.export.runner", "ddsa_sim.scene.builder", 2) in got  # inside a function
    assert ("ddsa_sim.training.data", "ddsa_sim.export.format", 2) in got  # from pkg import module
    assert ("ddsa_sim.cli", "ddsa_sim.export.runner", 3) in got  # import_module("literal")
    assert not any(a.source == "ddsa_sim.projector.kernels_torch" for a in arrows)  # TYPE_CHECKING skipped
    assert check_tree(fake_tree) == []


def test_checker_fails_on_a_forbidden_import_and_a_cycle(fake_tree):
    _write(fake_tree, {
        # physics must not know the projector; nothing may import cli; vessel_models knows no ddsa_sim
        "ddsa_sim/physics/detector.py": "import numpy\n\ndef f():\n    from ddsa_sim.projector import projector\n",
        "ddsa_sim/export/sample.py": "from ddsa_sim.cli import main\n",
        "vessel_models/io.py": "from ddsa_sim import InputError\n",
        # training may read export.format but not the runner, nor any projector kernel
        "ddsa_sim/training/loop.py": "from ddsa_sim.export.runner import run\nimport ddsa_sim.projector.kernels_torch\n",
        # a module outside the table, and an import of it
        "ddsa_sim/imaging/__init__.py": "",
        "ddsa_sim/scene/render.py": "from ddsa_sim.imaging import motion\n",
        # a cycle through a function-level import and a relative import
        "ddsa_sim/export/config.py": "def renderers():\n    from ddsa_sim.export.plan import R\n",
        "ddsa_sim/export/plan.py": "from .config import renderers\nR = 1\n",
        # a private helper borrowed from another module
        "ddsa_sim/cli/scene.py": "from ddsa_sim.cli import _parse_point, main\nfrom ddsa_sim import _openmp\n",
    })
    problems = check_tree(fake_tree)
    assert problems == [
        "import cycle ddsa_sim.export.config -> ddsa_sim.export.plan -> ddsa_sim.export.config "
        "(ddsa_sim/export/config.py:2, ddsa_sim/export/plan.py:1)",
        "ddsa_sim/imaging/__init__.py: module ddsa_sim.imaging belongs to no package of the layout table",
        "ddsa_sim/export/sample.py:1: ddsa_sim.export.sample imports ddsa_sim.cli: nothing imports cli (the only top)",
        "ddsa_sim/physics/detector.py:4: ddsa_sim.physics.detector imports ddsa_sim.projector.projector: "
        "physics may import root; not projector",
        "ddsa_sim/scene/render.py:1: ddsa_sim.scene.render imports ddsa_sim.imaging: "
        "'ddsa_sim.imaging' belongs to no package of the layout table",
        "ddsa_sim/training/loop.py:1: ddsa_sim.training.loop imports ddsa_sim.export.runner: training may import "
        "root, geometry, volumes, physics, scene, vessel_models, export.format, export.store, angio; not export",
        "ddsa_sim/training/loop.py:2: ddsa_sim.training.loop imports ddsa_sim.projector.kernels_torch: training may "
        "import root, geometry, volumes, physics, scene, vessel_models, export.format, export.store, angio; "
        "not projector",
        "vessel_models/io.py:1: vessel_models.io imports ddsa_sim: vessel_models may import nothing outside itself; "
        "not root",
        "ddsa_sim/cli/scene.py:1: ddsa_sim.cli.scene imports private _parse_point from ddsa_sim.cli: "
        "make it public in a module both may import",
    ]
