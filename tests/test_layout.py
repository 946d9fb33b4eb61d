"""The package's import graph (issue 26): drawn from the AST of every module,
function-level imports included, it has no circles and no module imports
a module on a higher floor. The floors, lowest first, are the layout of
DESIGN.md's architecture: a room may look down or sideways, never up."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "pyfastent"

# Lowest first. A module is on the floor of its longest matching prefix.
FLOORS = [
    ("pyfastent._checks", "pyfastent._memory", "pyfastent._warnings", "pyfastent._text", "pyfastent._ranks",
     "pyfastent._native", "pyfastent._version", "pyfastent.estimate", "pyfastent.data",
     "pyfastent.models"),
    ("pyfastent.samples", "pyfastent._distances"),
    ("pyfastent.widths", "pyfastent.variable"),
    ("pyfastent.settings", "pyfastent._progress", "pyfastent.reuse"),
    ("pyfastent.ops",),
    ("pyfastent.estimators",),
    ("pyfastent.measures", "pyfastent.similarity", "pyfastent.token_measures", "pyfastent.view_measures",
     "pyfastent.significance", "pyfastent.distributed", "pyfastent.info"),
    ("pyfastent.compat",),
    ("pyfastent.nn",),
    ("pyfastent.plot", "pyfastent.reproduce"),
    ("pyfastent.integrations", "pyfastent.cli", "pyfastent.__main__", "pyfastent"),
]


def module_names() -> dict:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = module_names()


def floor(name: str) -> int:
    best, level = -1, None
    for i, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), i
    assert level is not None, f"{name} is on no floor: add it to FLOORS"
    return level


def imports_of(name: str) -> set:
    """The package modules ``name`` imports, anywhere in its code."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for target in targets:
            while target not in MODULES and "." in target:
                target = target.rpartition(".")[0]
            if target in MODULES and target != name:
                found.add(target)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def test_every_module_is_on_a_floor():
    for name in MODULES:
        floor(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_upward(name):
    upward = sorted(t for t in GRAPH[name] if floor(t) > floor(name))
    assert not upward, f"{name} (floor {floor(name)}) imports from higher floors: {upward}"


def test_the_import_graph_has_no_circles():
    state, path, circles = {}, [], []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == "open":
                circles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = "done"

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_the_check_sees_function_level_imports():
    """A function-level import counts like a top-level one (else the test
    above could not fail for the circles the layout issue found)."""
    tree = ast.parse("def f():\n    from pyfastent.nn import stream\n")
    assert any(isinstance(n, ast.ImportFrom) and n.module == "pyfastent.nn" for n in ast.walk(tree))
    assert "pyfastent.nn.stream" in imports_of("pyfastent.nn.capture")


# A module says one thing; past about 400 lines it says several.
MOST_LINES = 420


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_about_400_lines(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MOST_LINES, f"{name} has {lines} lines (at most {MOST_LINES}): split it by concept"


def code_lines(path: Path) -> list:
    """Non-blank lines, stripped, without comments and imports (which repeat by nature)."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith(("#", "import ", "from "))]


def repeated_blocks(texts: dict, size: int = 6) -> dict:
    """Blocks of ``size`` consecutive code lines found in two or more of ``texts`` (name -> lines)."""
    where: dict = {}
    for name, lines in texts.items():
        for i in range(len(lines) - size + 1):
            block = tuple(lines[i:i + size])
            if sum(map(len, block)) >= 120:  # six closing brackets or `else:` lines are no copy
                where.setdefault(block, set()).add(name)
    return {block: names for block, names in where.items() if len(names) > 1}


def test_no_block_of_six_lines_is_repeated_between_modules():
    found = repeated_blocks({name: code_lines(path) for name, path in MODULES.items()})
    assert not found, "repeated between modules (make one helper): " + "; ".join(
        f"{sorted(names)}: {block[0]!r}..." for block, names in found.items())


def test_the_repetition_check_finds_a_copy():
    helper = [f"value_{i} = compute_something_long(argument_{i}, another_argument_{i})" for i in range(6)]
    assert repeated_blocks({"a": ["x = 1"] + helper, "b": helper + ["y = 2"], "c": helper[:5]})
    assert not repeated_blocks({"a": helper, "b": helper[:5]})
