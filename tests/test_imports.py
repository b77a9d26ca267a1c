"""The package's modules import each other in one direction only: no cycles.

Every import statement of every module counts, wherever it is (module level, inside a function,
under ``if TYPE_CHECKING``: a lazy import still ties two modules both ways), and so does a submodule
named by a string (``importlib.import_module(...)``, the registry's ``module=`` of a backend).
``from package import name`` ties to ``package.name`` when that is a module, else to the package.
The only ties allowed to close a loop are listed by name in ``ALLOWED_TIES``, each with the reason.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import stylegan_fast

ROOT = Path(stylegan_fast.__file__).parent
PACKAGE = "stylegan_fast"

# (importer, imported): the ties that may close a loop, and why each is there.
ALLOWED_TIES = {
    # Lazily loaded backend plugins: the registry imports a backend's package by name on first
    # use, and the plugin registers its implementations with the registry.
    ("stylegan_fast.ops.backends", "stylegan_fast.ops.triton"): "backend plugin (triton)",
    ("stylegan_fast.ops.backends", "stylegan_fast.ops.cuda"): "backend plugin (cuda)",
    # Lazy top-level exports: stylegan_fast.generate etc. import the tools on first access.
    ("stylegan_fast", "stylegan_fast.tools"): "lazy top-level export of the generation tools",
}


def module_files() -> dict[str, Path]:
    """Module name -> file, for every module of the package (a package is its __init__)."""
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _absolute(module: str, level: int, name: str | None) -> str:
    """The absolute name of ``from <level dots><name> import ...`` written in ``module``."""
    if level == 0:
        return name or ""
    base = module.split(".")
    if not _is_package(module):
        base = base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _in_package(name: str) -> str | None:
    """The package module that importing ``name`` names (its longest known prefix), or None."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def imports_of(module: str) -> set[str]:
    """The package's modules that ``module`` imports, anywhere in its file."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    named = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node.level, node.module)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                named.add(submodule if submodule in MODULES else source)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # a submodule named by a string, to be imported by name later (a bare
            # "stylegan_fast" is more often a folder name, e.g. of the cache)
            if "." in node.value and node.value in MODULES:
                named.add(node.value)
    return {target for name in named if (target := _in_package(name)) and target != module}


def import_graph() -> dict[str, set[str]]:
    return {module: imports_of(module) for module in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_sees_imports_in_functions_and_by_name():
    graph = import_graph()
    # inside a function: the doctor imports the backend registry lazily
    assert "stylegan_fast.ops.backends" in graph["stylegan_fast.cli"]
    # by name: the registry loads its plugins with importlib
    assert "stylegan_fast.ops.triton" in graph["stylegan_fast.ops.backends"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("tie", sorted(ALLOWED_TIES), ids="->".join)
def test_every_allowed_tie_exists(tie):
    """A tie that is gone must leave the list, so that the list stays exactly what is allowed."""
    importer, imported = tie
    assert imported in import_graph()[importer], f"{importer} no longer imports {imported}"


def test_no_import_cycles():
    graph = import_graph()
    for importer, imported in ALLOWED_TIES:
        graph[importer].discard(imported)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_registry_and_cuda_build_do_not_import_each_other():
    graph = import_graph()
    backends, build = "stylegan_fast.ops.backends", "stylegan_fast.ops.cuda.build"
    assert not (build in graph[backends] and backends in graph[build])


def listed_bench_modules() -> list[str]:
    """The modules that stylegan_fast/bench/__init__.py lists, in its order."""
    import re

    import stylegan_fast.bench

    return [f"stylegan_fast.bench.{name}"
            for name in re.findall(r"^\* :mod:`\.(\w+)`", stylegan_fast.bench.__doc__, re.M)]


def test_bench_modules_are_listed_and_import_only_those_before_them():
    listed = listed_bench_modules()
    actual = sorted(m for m in MODULES if m.startswith("stylegan_fast.bench."))
    assert sorted(listed) == actual, "stylegan_fast/bench/__init__.py must list every module"
    graph = import_graph()
    assert not [m for m in graph["stylegan_fast.bench"] if m.startswith("stylegan_fast.bench.")]
    for position, module in enumerate(listed):
        later = [m for m in graph[module] if m in listed[position:]]
        assert not later, f"{module} imports {later}, listed after it"


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("stylegan_fast.bench")])
def test_bench_modules_say_what_they_are_for_in_one_line(module):
    tree = ast.parse(MODULES[module].read_text())
    doc = ast.get_docstring(tree)
    assert doc, f"{module} has no docstring"
    lines = doc.splitlines()
    # one summary sentence on one line, then (optionally) a blank line and the details
    assert lines[0].endswith(".") and (len(lines) == 1 or not lines[1].strip()), lines[:2]
