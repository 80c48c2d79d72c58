"""The house's import graph: every module imports, no cycle, and the layering holds.

The graph is read from the source (every ``import`` statement, also the ones inside
functions, which run later but still run; ``if TYPE_CHECKING:`` blocks excluded), so a
cycle that only bites in one import order is found without trying every order.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import otedama

ROOT = Path(otedama.__file__).parent

#: Top-level modules and packages that are not a domain: the entry points and the commands.
NOT_DOMAIN = {"cli", "commands", "tap"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {
    module_name(path): path
    for path in sorted(ROOT.rglob("*.py"))
    if "migrations" not in path.relative_to(ROOT).parts
}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_runtime(node: ast.AST) -> list[ast.AST]:
    """Every node under ``node`` except the bodies of ``if TYPE_CHECKING:``."""
    found: list[ast.AST] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                found.append(other)
                found.extend(_walk_runtime(other))
            continue
        found.append(child)
        found.extend(_walk_runtime(child))
    return found


def imports_of(name: str) -> set[str]:
    """The otedama modules ``name`` imports at run time (at any depth of its code)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _walk_runtime(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                targets.add(submodule if submodule in MODULES else source)
    return {target for target in targets if target in MODULES and target != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that starts and ends at the same module, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def top_package(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name: str) -> None:
    assert importlib.import_module(name).__name__ == name


def test_the_import_graph_reads_lazy_imports() -> None:
    """Guard for the reader below: a function-level import is an edge too."""
    assert "otedama.commands" in GRAPH["otedama.cli"]
    assert "otedama.ops.reactor" in GRAPH["otedama.commands.mine"]


def test_no_import_cycle_at_run_time() -> None:
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]


def test_no_domain_package_imports_the_cli_or_the_commands() -> None:
    offenders = sorted(
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if top_package(name) not in NOT_DOMAIN
        for target in targets
        if top_package(target) in {"cli", "commands"}
    )
    assert offenders == []


#: Who may import the devnet: it is a product of its own, not a part of the node.
DEVNET_USERS = {"tap", "commands", "bench", "devnet"}


def test_only_the_entry_points_and_benchmarks_import_the_devnet() -> None:
    offenders = sorted(
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if top_package(name) not in DEVNET_USERS
        for target in targets
        if top_package(target) == "devnet"
    )
    assert offenders == []


def test_the_devnet_imports_nothing_of_the_node() -> None:
    """The devnet's RPC layer depends on a node Protocol and the chain, not on node/."""
    assert not any(
        top_package(target) in {"node", "pool", "stratum", "ledger"}
        for name, targets in GRAPH.items()
        if top_package(name) == "devnet"
        for target in targets
    )


def test_the_bitcoind_client_tests_do_not_import_the_devnet() -> None:
    """Client tests use stub daemons; tests against the devnet live in tests/devnet/."""
    client_tests = Path(__file__).parents[1] / "node"
    offenders = []
    for path in sorted(client_tests.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.name}: {n}" for n in names if "devnet" in n]
    assert offenders == []


def test_only_the_reactor_helper_installs_the_asyncio_reactor() -> None:
    """One helper installs the asyncio reactor (``otedama.ops.reactor``); the node, the
    commands and the benchmarks call it instead of a copy of their own."""
    offenders = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "twisted.internet":
                names = [alias.name for alias in node.names]
            elif (
                isinstance(node, ast.ImportFrom)
                and node.module == "twisted.internet.asyncioreactor"
            ):
                names = ["asyncioreactor"]
            elif isinstance(node, ast.Import):
                names = [alias.name.rpartition(".")[2] for alias in node.names]
            else:
                continue
            if "asyncioreactor" in names:
                offenders.append(name)
    assert offenders == ["otedama.ops.reactor"]
