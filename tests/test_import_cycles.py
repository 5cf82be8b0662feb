"""The package's modules import each other without cycles (module-level and function-level imports alike),
and the layers import only downwards: the model never reads a dataset, the RL math knows neither."""

from __future__ import annotations

import ast
from pathlib import Path

import lerobot_policy_pi_star_recap

PACKAGE = Path(lerobot_policy_pi_star_recap.__file__).parent
NAME = PACKAGE.name
# layer -> layers it must not import. The tensor model sees RECAP targets as tensors (`model.inputs`) and
# never reads a dataset; the RL math works on plain tensors and arrays.
FORBIDDEN = {"model": ("data",), "rl": ("model", "data")}
# The applications built on the policy import it, never the other way round, so lerobot-train and
# lerobot-eval load the policy without MetaWorld or the command-line tools. The package's __init__ imports
# the light sim.config alone, which registers --env.type=metaworld_recap.
APPLICATIONS = ("sim", "commands", "loop")
REGISTRATIONS = {("", "sim.config")}


def layer(module: str) -> str:
    """The subpackage a module belongs to ("" for the package's top-level modules)."""
    return module.split(".")[0] if "." in module else ""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its body (relative or absolute)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name.split(".") if name else []
        base = here if is_package else here[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base[: len(base) - (node.level - 1)]
                    stem = anchor + (node.module.split(".") if node.module else [])
                elif node.module and node.module.split(".")[0] == NAME:
                    stem = node.module.split(".")[1:]
                else:
                    continue
                # `from .a import b`: module a.b if there is one, else a (the module defining name b)
                targets = [
                    ".".join(stem + [alias.name])
                    if ".".join(stem + [alias.name]) in modules
                    else ".".join(stem)
                    for alias in node.names
                ]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".", 1)[1] for a in node.names if a.name.startswith(NAME + ".")]
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    assert cycles(package_imports()) == []


def test_layers_import_only_downwards():
    graph = package_imports()
    assert {layer(m) for m in graph} >= set(FORBIDDEN)  # the rule names layers that exist
    wrong = {
        m: sorted(d for d in imported if layer(d) in FORBIDDEN.get(layer(m), ()))
        for m, imported in graph.items()
    }
    assert {m: found for m, found in wrong.items() if found} == {}


def test_the_policy_never_imports_its_applications():
    graph = package_imports()
    wrong = {
        m: sorted(d for d in imported if layer(d) in APPLICATIONS and (m, d) not in REGISTRATIONS)
        for m, imported in graph.items()
        if layer(m) not in APPLICATIONS
    }
    assert {m: found for m, found in wrong.items() if found} == {}


if __name__ == "__main__":
    print(cycles(package_imports()))
