"""The package's layering (DESIGN.md, "Layout"), checked on the source itself with ``ast``.

Every module of src/guidance_repro is parsed (nothing is imported). A module *refers* to another
when it imports it, at module level or inside a function, or names it in a string
("guidance_repro.x.y" or "guidance_repro.x.y:attr", the form of the task table and of cli.py's
command list, which importlib resolves at run time). Importing ``a.b.c`` also runs the package
``__init__`` files on the way (``a``, ``a.b``), so those count as referred to as well.

Rules: shared layers never refer to a model family; a family refers to no other family except
the bases it is built on (STAR on VAR); the references form no cycle; no module is over 500 lines.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "guidance_repro"
FAMILIES = {"llamagen", "var", "star", "edm", "toy2d"}
FAMILY_BASES = {"star": {"var"}}  # star's networks are built on VAR's blocks
SHARED = {"nn", "guidance", "sampling", "train", "metrics", "data", "report",
          "io", "errors", "allocator", "config_schema", "replicates", "shard_chunks",
          "official_clone"}
# The entry points above both: the CLI and the task table name the families' modules, and so do
# the golden values (fixed computations through every family's tasks and samplers).
TOP = {"", "__main__", "cli", "tasks", "golden"}
MAX_LINES = 500
MODULE_STRING = re.compile(rf"{PACKAGE}(?:\.\w+)+(?::\w+)?")


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover(src: Path = SRC) -> dict[str, Path]:
    return {module_name(p, src): p for p in sorted((src / PACKAGE).rglob("*.py"))}


def _resolve(name: str, modules: set[str]) -> str | None:
    """The deepest module of the package that ``name`` (a module or module.attribute) names."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def referenced_names(tree: ast.AST, importer: str, is_package: bool) -> set[str]:
    """Dotted names a module refers to: every import (anywhere in the file) and module strings."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = importer.split(".")
                anchor = anchor[:len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if MODULE_STRING.fullmatch(node.value):
                names.add(node.value.partition(":")[0])
    return names


def reference_graph(src: Path = SRC) -> dict[str, set[str]]:
    modules = discover(src)
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        targets: set[str] = set()
        for ref in referenced_names(tree, name, path.name == "__init__.py"):
            target = _resolve(ref, known)
            if target is None:
                continue
            parts = target.split(".")
            # the packages whose __init__ runs on the way (not the importer's own: already running)
            targets.update(p for p in (".".join(parts[:i]) for i in range(1, len(parts) + 1))
                           if p not in own_packages)
        targets.discard(name)
        graph[name] = targets
    return graph


def layer(module: str) -> str:
    """The first part below the package ('' for the package itself)."""
    return module.split(".")[1] if "." in module else ""


def circular_groups(graph: dict[str, set[str]]) -> list[set[str]]:
    """The groups of two or more modules that all reach each other (Tarjan's strong components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a closed path) per circular group."""
    return [_cycle_in(group, graph) for group in circular_groups(graph)]


def _cycle_in(group: set[str], graph: dict[str, set[str]]) -> list[str]:
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:  # breadth first inside the group, back to the start
        v = queue.pop(0)
        for w in sorted(graph[v] & group):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    raise AssertionError(f"no cycle through {start} in {sorted(group)}")  # cannot happen for an SCC


def _violations(graph: dict[str, set[str]], allowed) -> list[str]:
    return sorted(f"{src} -> {dst}" for src, targets in graph.items() for dst in targets
                  if not allowed(layer(src), layer(dst)))


# --- the rules, on the real source -----------------------------------------------------------------

GRAPH = reference_graph()


def test_every_module_belongs_to_a_known_layer():
    unknown = sorted(m for m in GRAPH if layer(m) not in FAMILIES | SHARED | TOP)
    assert not unknown, (f"modules outside every layer (add their package to FAMILIES or SHARED "
                         f"in {Path(__file__).name}): {unknown}")


def test_shared_layers_refer_to_no_family():
    bad = _violations(GRAPH, lambda s, d: not (s in SHARED and d in FAMILIES))
    assert not bad, "a shared layer refers to a model family:\n" + "\n".join(bad)


def test_families_refer_only_to_their_bases():
    # in particular llamagen and var never refer to each other
    bad = _violations(GRAPH, lambda s, d: not (s in FAMILIES and d in FAMILIES and s != d
                                               and d not in FAMILY_BASES.get(s, set())))
    assert not bad, "a family refers to another family:\n" + "\n".join(bad)


def test_no_import_cycle():
    groups = circular_groups(GRAPH)
    assert not groups, "import cycles:\n" + "\n".join(
        f"{' -> '.join(_cycle_in(g, GRAPH))}  (all modules of this circle: {', '.join(sorted(g))})"
        for g in groups)


def test_no_module_over_500_lines():
    long = {m: n for m, p in discover().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


# --- the checker itself sees what it must ------------------------------------------------------------

def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for rel, text in files.items():
        path = tmp_path / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return reference_graph(tmp_path)


def test_checker_sees_function_level_imports_strings_and_relative_imports(tmp_path):
    graph = _tree(tmp_path, {
        "__init__.py": "",
        "train/__init__.py": "",
        "train/table.py": 'TASKS = {"x": "guidance_repro.var.model:make_task"}\n',
        "train/loop.py": "def f():\n    from guidance_repro.llamagen import model\n",
        "var/__init__.py": "",
        "var/model.py": "from . import tasks\n",
        "var/tasks.py": "import guidance_repro.llamagen.model\n",
        "llamagen/__init__.py": "",
        "llamagen/model.py": "from guidance_repro.train.loop import f\n",
    })
    assert "guidance_repro.var.model" in graph["guidance_repro.train.table"]
    assert graph["guidance_repro.train.loop"] >= {"guidance_repro.llamagen", "guidance_repro.llamagen.model"}
    assert graph["guidance_repro.var.model"] == {"guidance_repro.var.tasks"}
    assert _violations(graph, lambda s, d: not (s in SHARED and d in FAMILIES)) == [
        "guidance_repro.train.loop -> guidance_repro.llamagen",
        "guidance_repro.train.loop -> guidance_repro.llamagen.model",
        "guidance_repro.train.table -> guidance_repro.var",
        "guidance_repro.train.table -> guidance_repro.var.model"]
    assert find_cycles(graph) == [["guidance_repro.llamagen.model", "guidance_repro.train.loop",
                                   "guidance_repro.llamagen.model"]]
