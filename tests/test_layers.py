"""The house's layers depend one way: domain (srl_forge) <- training <- serving <- the Dagster assets
(srl_assets) <- the checks (asset_checks) <- the definitions that load the code location. Every import of
every project module counts, at module top or inside a function, and no two modules import each other
round a circle."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAYERS = ("srl_forge", "training", "serving", "srl_assets", "asset_checks")
# what loads the assets and the checks, above both: the code location and the main job's command line
TOP = ("srl_assets.definitions", "srl_assets.run")


def layer(module: str) -> int | None:
    if module in TOP:
        return len(LAYERS)
    top = module.split(".")[0]
    return LAYERS.index(top) if top in LAYERS else None


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in LAYERS:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports (a `from package import name` counts `package.name` when that
    is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if layer(a.name) is not None)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and layer(node.module) is not None:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules)
    return {m for m in found if m in modules}


MODULES = project_modules()
GRAPH = {module: imports_of(path, MODULES) for module, path in MODULES.items()}


def test_the_layers_are_all_found():
    assert {layer(m) for m in MODULES} == set(range(len(LAYERS) + 1))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_layer_above_its_own(module):
    above = sorted(m for m in GRAPH[module] if layer(m) > layer(module))
    assert not above, f"{module} ({MODULES[module].relative_to(REPO)}) imports a higher layer: {above}"


def test_no_import_circle():
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in sorted(GRAPH[module] - {module}):
            if target.startswith(module + "."):
                continue  # a package importing its own submodule is not a circle
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (circle := visit(target)):
                return circle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(GRAPH):
        if module not in state and (circle := visit(module)):
            pytest.fail("import circle: " + " -> ".join(circle))
