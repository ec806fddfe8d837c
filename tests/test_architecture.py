"""The package's layering (docs/architecture.md): no import cycle, and no import that goes up a layer.

Every ``import`` / ``from ... import`` of the package's own modules is read from the source with
``ast``, the ones inside functions too, so an import moved into a function to dodge a cycle still
counts.

Imports inside functions are for optional extras (and lazily loaded third-party modules); an import
of the package's own modules inside a function is allowed only where laziness is the point: the
command line (``deeplabv3plus.cli``: ``--help`` must not import torch, so each command imports its
job when it runs) and the package root's PEP 562 ``__getattr__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import deeplabv3plus

PACKAGE = Path(deeplabv3plus.__file__).parent

# docs/architecture.md's layers: a module may import its own layer and those below.
LAYERS = {
    "_compat": 0, "_version": 0,
    "catalog": 1, "config": 1, "runtime": 1,
    "data": 2, "models": 2,
    "inference": 3, "metrics": 3, "checkpoint": 3, "losses": 3,
    "weights": 4,
    "builders": 5,
    "loading": 6,
    "train": 7, "evaluate": 7, "predict": 7, "export": 7, "macs": 7, "benchmark": 7, "ablation": 7,
    "pretrained": 7, "convert": 7,
    "cli": 8, "__main__": 8,
}  # fmt: skip


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


MODULES = module_names()


def imported_modules(name: str, path: Path) -> set[str]:
    """The package modules that ``name`` imports, anywhere in its source (the package root excluded)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" for alias in node.names] + [module]
        else:
            continue
        for target in targets:
            while target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in MODULES and target not in (name, "deeplabv3plus"):
                found.add(target)
    return found


GRAPH = {name: imported_modules(name, path) for name, path in MODULES.items()}


def layer(module: str) -> int:
    top = module.split(".")[1]
    return LAYERS[top]


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when the graph has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_the_package_has_no_import_cycle():
    assert find_cycle(GRAPH) == []


def test_the_cycle_finder_finds_a_planted_cycle():
    planted = {k: set(v) for k, v in GRAPH.items()}
    planted["deeplabv3plus.config"].add("deeplabv3plus.builders")
    cycle = find_cycle(planted)
    assert cycle[0] == cycle[-1] and "deeplabv3plus.config" in cycle and "deeplabv3plus.builders" in cycle


def test_every_module_has_a_layer():
    assert sorted(m for m in MODULES if m != "deeplabv3plus" and m.split(".")[1] not in LAYERS) == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "deeplabv3plus"))
def test_no_module_imports_a_layer_above_its_own(module):
    upward = sorted(t for t in GRAPH[module] if layer(t) > layer(module))
    assert upward == [], f"{module} (layer {layer(module)}) imports " + ", ".join(
        f"{t} (layer {layer(t)})" for t in upward
    )


def test_models_hold_only_nn_modules_and_import_nothing_that_reads_files_or_configs():
    for module in (m for m in MODULES if m.startswith("deeplabv3plus.models")):
        assert {t for t in GRAPH[module] if not t.startswith("deeplabv3plus.models")} <= {
            "deeplabv3plus._compat"
        }


LAZY_IMPORTERS = {"deeplabv3plus.cli", "deeplabv3plus"}
"""The modules that may import the package's own modules inside functions."""

LAZY_COMMENT = "# here, not at the top: --help must not import torch"


def imports_inside_functions(path: Path) -> list[tuple[ast.FunctionDef, ast.stmt]]:
    """(function, import statement) for every import in the body of a function (nested ones too)."""
    found = []
    for fn in ast.walk(ast.parse(path.read_text())):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found += [(fn, n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))]
    return found


def test_only_the_cli_and_the_package_root_import_the_package_inside_functions():
    hidden = []
    for name, path in MODULES.items():
        for fn, node in imports_inside_functions(path):
            own = (
                isinstance(node, ast.ImportFrom)
                and (node.level > 0 or (node.module or "").startswith("deeplabv3plus"))
                or isinstance(node, ast.Import)
                and any(a.name.startswith("deeplabv3plus") for a in node.names)
            )
            if own and name not in LAZY_IMPORTERS:
                hidden.append(f"{name}.{fn.name} (line {node.lineno})")
    assert hidden == []


def test_every_lazy_import_of_the_cli_says_why():
    path = MODULES["deeplabv3plus.cli"]
    lines = path.read_text().splitlines()
    first_imports = {}
    for fn, node in imports_inside_functions(path):
        first_imports.setdefault(fn.name, node.lineno)
    assert {"run_train", "run_eval", "run_benchmark", "_exit_code"} <= set(first_imports)
    for fn_name, lineno in first_imports.items():
        assert lines[lineno - 2].strip() == LAZY_COMMENT, fn_name


def test_the_lazy_cli_imports_still_count_in_the_layering():
    # The imports inside run_<command> functions are the edges the cycle and layer checks walk.
    assert {"deeplabv3plus.train", "deeplabv3plus.evaluate", "deeplabv3plus.benchmark"} <= GRAPH[
        "deeplabv3plus.cli"
    ]
