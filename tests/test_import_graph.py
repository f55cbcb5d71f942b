"""No import cycle between ziegler_trl modules, counting the imports inside functions too.

An edge A → B means running A's code (at import or in a function) imports B: `import x.y` and `from x import n`
execute every package `__init__` on the path and then the module. A package `__init__` that re-exports lazily
(`ziegler_trl/lazy.py`) imports none of its submodules when it runs; only `from package import name` for a
lazily exported `name` imports the submodule that holds it. So that statement gets an edge to the submodule, and
the `__init__` itself gets no edge to what it lists: otherwise every `from ..ppo.tf_adam import ...` would seem to
reach the PPO trainer through `ppo/__init__`'s table, a cycle that never runs. Imports under `if TYPE_CHECKING:`
never run and count only for type checkers; they are left out. Imports by computed name (`importlib`) are not
statements and are not seen here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "ziegler_trl"

def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name → file, for every module of the package at `root` (a package by its `__init__.py`)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def lazy_exports(tree: ast.Module) -> dict[str, str]:
    """A package `__init__`'s `_EXPORTS` table (public name → relative submodule), or {} if it has none."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            return eval(compile(ast.Expression(node.value), "_EXPORTS", "eval"), {"__builtins__": {}, "dict": dict})
    return {}


def resolve(relative: str, package: str) -> str:
    """`..models` inside package `ziegler_trl.reward` → `ziegler_trl.models`."""
    level = len(relative) - len(relative.lstrip("."))
    base = package.split(".")[: len(package.split(".")) - level + 1]
    rest = relative[level:]
    return ".".join(base + ([rest] if rest else []))


def executed_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: at module level and in functions, not under `if TYPE_CHECKING:`."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) and id(n) not in skipped]


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module → the modules its import statements run, for the package at `root` (imports of other packages
    left out)."""
    package_name = root.name
    files = module_files(root)
    trees = {name: ast.parse(path.read_text(), str(path)) for name, path in files.items()}
    exports = {
        name: {public: resolve(module, name) for public, module in lazy_exports(tree).items()}
        for name, tree in trees.items() if files[name].name == "__init__.py"
    }

    def with_packages(module: str, importer: str) -> set[str]:
        """`module` and the packages above it, less the importer's own packages: those run already."""
        parts = module.split(".")
        chain = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        above_importer = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 1)}
        return {m for m in chain if m in files and m not in above_importer}

    graph: dict[str, set[str]] = {}
    for name, tree in trees.items():
        package = name if files[name].name == "__init__.py" else name.rpartition(".")[0]
        edges = graph.setdefault(name, set())
        for node in executed_imports(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    edges |= with_packages(alias.name, name)
                continue
            source = resolve("." * node.level + (node.module or ""), package) if node.level else node.module or ""
            if source != package_name and not source.startswith(package_name + "."):
                continue
            targets = set()
            for alias in node.names:
                if f"{source}.{alias.name}" in files:  # a submodule
                    targets |= with_packages(f"{source}.{alias.name}", name)
                elif alias.name in exports.get(source, {}):  # a lazy export: its submodule runs
                    targets |= with_packages(exports[source][alias.name], name)
                else:  # a name the package's `__init__` (or the module) defines: read from it
                    targets.add(source)
            edges |= with_packages(source, name) | targets
        edges.discard(name)
    return graph


def components(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module: each holds at least one cycle (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def cycle_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    return paths[node] + [start]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{component} is not strongly connected")


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root / "pkg"


def test_the_graph_follows_function_level_and_lazy_imports_and_skips_type_checking(tmp_path):
    lazy_init = 'from .lazy import lazy_exports\n_EXPORTS = {**dict.fromkeys(["f"], ".a"), "Thing": ".sub.thing"}\n'
    root = write_package(tmp_path, {
        "pkg/__init__.py": lazy_init,
        "pkg/lazy.py": "",
        "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n"
                    "def f():\n    from .sub.thing import Thing\n",
        "pkg/b.py": "import os\nfrom . import f\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/thing.py": "import pkg.b\nfrom .. import Thing, lazy_exports\n",
    })
    graph = import_graph(root)
    assert graph["pkg"] == {"pkg.lazy"}  # the lazy table imports nothing when the package runs
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.thing"}  # in a function; not the TYPE_CHECKING import
    assert graph["pkg.b"] == {"pkg.a"}  # `f` is exported lazily from `pkg.a`; `pkg` itself runs already
    # `Thing` is its own export; `lazy_exports` is a name bound in the package's `__init__`
    assert graph["pkg.sub.thing"] == {"pkg", "pkg.b"}
    assert components(graph) == [{"pkg.a", "pkg.b", "pkg.sub.thing"}]
    assert cycle_through(graph, components(graph)[0]) == ["pkg.a", "pkg.sub.thing", "pkg.b", "pkg.a"]


def test_no_import_cycle():
    graph = import_graph()
    cycles = [cycle_through(graph, component) for component in components(graph)]
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(cycle) for cycle in cycles)
