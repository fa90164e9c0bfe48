"""The package's import graph, read from source: no cycles, a leaf ``types``, a lean server.

The graph counts every ``import`` and ``from`` statement anywhere in a module, inside
functions and ``if TYPE_CHECKING:`` blocks too, because a lazy import that hides a cycle is
still a cycle in the design. Importing ``a.b.c`` also runs the packages ``a`` and ``a.b``, so
those count as edges too, except a module's own enclosing packages (already being imported)
unless it reads a name from one (``from a import NAME``), which needs that ``__init__`` run.

What the request path loads is checked by importing it in a fresh interpreter and reading
``sys.modules``: the offline parts (router training, the evaluation harness) must stay out.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

PACKAGE = "smallfirst"
SRC = Path(__file__).resolve().parents[1] / "src"  # this checkout's sources, not an install
# never imported by the gateway's request path (ARCHITECTURE.md: training and evals are offline)
OFFLINE = ("smallfirst.routing.training", "smallfirst.evals")


def module_files(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package."""
    mods = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def imported_names(module: str, path: Path) -> Iterator[tuple[str, str | None]]:
    """(absolute module name, the name read from it or None) for each import, resolved.

    ``from pkg import name`` loads ``pkg.name`` when that is a submodule, and otherwise reads
    ``name`` from ``pkg`` itself; both are yielded, the caller knows which modules exist.
    """
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join([*here, base] if base else here)
            if base == "__future__":
                continue
            yield base, None
            for alias in node.names:
                yield f"{base}.{alias.name}", None
                yield base, alias.name


def ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules that importing it runs (see the module docstring)."""
    mods = module_files(src, package)
    graph: dict[str, set[str]] = {}
    for module, path in mods.items():
        own = {module, *ancestors(module)}
        deps = set()
        for name, attribute in imported_names(module, path):
            if name not in mods:
                continue
            if attribute is not None:
                # reading a name (not a submodule) from a package needs its __init__ run,
                # even when that package encloses this module
                if f"{name}.{attribute}" not in mods and name != module:
                    deps.add(name)
                continue
            deps.update(m for m in (*ancestors(name), name) if m in mods and m not in own)
        graph[module] = deps
    return graph


def components(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components that hold a cycle (modules importing each other)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan; the graph is a few hundred nodes, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(set(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One concrete cycle (first module repeated at the end) per component with a cycle."""
    return [shortest_cycle(graph, c) for c in components(graph)]


def shortest_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """The shortest path from the component's first module back to itself, inside it."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")


def test_the_graph_sees_lazy_relative_and_parent_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("from pkg import c\n")
    (pkg / "sub" / "b.py").write_text("from .. import d\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    (pkg / "d.py").write_text("")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.d"}  # its own packages pkg, pkg.sub are no edge
    # the cycle closes only through pkg/sub/__init__.py, which importing pkg.sub.b runs
    assert cycles(graph) == [["pkg.a", "pkg.sub", "pkg.c", "pkg.a"]]
    (pkg / "c.py").write_text("")
    assert cycles(import_graph(tmp_path, "pkg")) == []
    # a name read from the enclosing package needs its __init__, which imports this module
    (pkg / "sub" / "__init__.py").write_text("from .b import VALUE\n")
    (pkg / "sub" / "b.py").write_text("from pkg.sub import OTHER\n")
    assert cycles(import_graph(tmp_path, "pkg")) == [["pkg.sub", "pkg.sub.b", "pkg.sub"]]


def test_no_import_cycles() -> None:
    graph = import_graph()
    found = [
        f"{' -> '.join(shortest_cycle(graph, c))}  (tangled: {', '.join(sorted(c))})"
        for c in components(graph)
    ]
    assert not found, "import cycles:\n" + "\n".join(found)


def test_types_is_a_leaf() -> None:
    path = module_files()["smallfirst.types"]
    inside = sorted(
        {
            name
            for name, _ in imported_names("smallfirst.types", path)
            if name == PACKAGE or name.startswith(PACKAGE + ".")
        }
    )
    assert inside == [], f"smallfirst.types imports {inside}"


# run in a fresh interpreter: which of the package's modules each step has loaded
REQUEST_PATH = """
import json, sys
from pathlib import Path
def ours():
    return sorted(m for m in sys.modules if m == "smallfirst" or m.startswith("smallfirst."))
from smallfirst.server.app import create_app
after_import = ours()
from smallfirst.settings import Settings
create_app(Settings(data_dir=Path(sys.argv[1]), default_router=True))
print(json.dumps({"import": after_import, "create_app": ours()}))
"""


@pytest.fixture(scope="module")
def request_path(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The package's modules loaded by importing the server, then by building the app."""
    data_dir = tmp_path_factory.mktemp("request-path")
    env = {**os.environ, "SMALLFIRST_DATA_DIR": str(data_dir)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-c", REQUEST_PATH, str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    loaded: dict[str, list[str]] = json.loads(out.stdout.splitlines()[-1])
    return loaded


def offline(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == o or m.startswith(o + ".") for o in OFFLINE)]


def test_importing_the_server_loads_nothing_offline(request_path: dict[str, list[str]]) -> None:
    modules = request_path["import"]
    assert "smallfirst.server.app" in modules  # the check ran where it should
    assert not offline(modules), f"importing the server loads {offline(modules)}"


def test_building_the_app_with_the_packaged_router_loads_nothing_offline(
    request_path: dict[str, list[str]],
) -> None:
    modules = request_path["create_app"]
    assert "smallfirst.routing.artifact" in modules  # the packaged router was loaded
    assert not offline(modules), f"building the app loads {offline(modules)}"
