"""No import cycles among the modules of ``pybpf`` and of ``sniffwrites``.

The graph is read from the source with :mod:`ast`, so an import hidden
inside a function counts as much as one at the top of the module: a
function-level import only delays a cycle to the first call, it does not
remove it (DESIGN.md: "No import cycles, also not through function-level
imports"). An edge goes from a module to each module of the same package
it names: ``from . import maps`` and ``from .maps import Map`` both lead
to ``maps``; ``from .. import dsl`` leads to the package ``dsl`` (its
``__init__``). Importing a submodule also runs its package's
``__init__``, but that edge is left out as every import tool does: a
package's ``__init__`` that re-exports its modules would otherwise be in
a cycle with each of them.
"""

import ast
import os
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def module_files(package: str, root: str) -> Dict[str, str]:
    """Dotted module name -> source path, for every module of ``package`` under ``root``."""
    found = {}
    base = os.path.join(root, package)
    for folder, _dirs, files in os.walk(base):
        for name in files:
            if not name.endswith(".py"):
                continue
            relative = os.path.relpath(os.path.join(folder, name), root)[:-3].split(os.sep)
            if relative[-1] == "__init__":
                relative = relative[:-1]
            found[".".join(relative)] = os.path.join(folder, name)
    return found


def _resolve(module: str, is_package: bool, level: int, target: Optional[str]) -> str:
    """The absolute name of ``from <level dots><target> import ...`` in ``module``."""
    if level == 0:
        return target or ""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[:len(parts) - (level - 1)]
    return ".".join(parts + ([target] if target else []))


def imports_of(module: str, path: str, known: Set[str]) -> Iterator[Tuple[str, int]]:
    """(imported module of ``known``, line) for each import in the file,
    at any depth (functions, classes, ``if`` blocks)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    is_package = path.endswith("__init__.py")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            for alias in node.names:
                submodule = base + "." + alias.name
                if submodule in known:
                    yield submodule, node.lineno
                elif base in known:
                    yield base, node.lineno


def import_graph(package: str, root: str = ROOT) -> Dict[str, Dict[str, int]]:
    """module -> {imported module: line of the first such import}."""
    files = module_files(package, root)
    known = set(files)
    graph: Dict[str, Dict[str, int]] = {}
    for module, path in sorted(files.items()):
        edges = graph.setdefault(module, {})
        for target, line in imports_of(module, path, known):
            if target != module:
                edges.setdefault(target, line)
    return graph


def find_cycle(graph: Dict[str, Dict[str, int]]) -> Optional[List[str]]:
    """One cycle as [a, b, ..., a], or None (depth-first search)."""
    state: Dict[str, int] = {}     # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, {})):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def describe(cycle: List[str], graph: Dict[str, Dict[str, int]]) -> str:
    return " -> ".join("%s (line %d)" % (a, graph[a][b]) for a, b in zip(cycle, cycle[1:])) \
        + " -> " + cycle[-1]


@pytest.mark.parametrize("package", ["pybpf", "sniffwrites"])
def test_no_import_cycle(package):
    graph = import_graph(package)
    assert len(graph) > 5, "found too few modules of %s: the walk is broken" % package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in %s: %s" % (package, describe(cycle, graph))


def test_finds_a_cycle_through_a_function_level_import(tmp_path):
    """The test above can fail: a cycle made only by an import inside a
    function is found and named."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import thing\n")
    (package / "b.py").write_text("def thing():\n    from . import a\n    return a\n")
    (package / "c.py").write_text("from .a import thing\n")
    graph = import_graph("pkg", str(tmp_path))
    cycle = find_cycle(graph)
    assert cycle == ["pkg.a", "pkg.b", "pkg.a"]
    assert describe(cycle, graph) == "pkg.a (line 1) -> pkg.b (line 2) -> pkg.a"
