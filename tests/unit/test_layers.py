"""server/'s folders are its programs, and their imports point one way: core ← kernel, cluster,
hub ← choose.py, cli.py. Every import inside server/ counts, at the top of a module or inside a
function, and those under ``if TYPE_CHECKING`` too: a type is a dependency as well.

In widget/, the kernel peer's parts (peer*.py) never reach into its facade (kernelpeer.py)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parents[2] / "server"
WIDGET = SERVER.parent / "widget"

#: What each folder may import besides itself. The top (choose.py, cli.py, __init__.py) may
#: import any of them; nothing imports the top but the top.
MAY_IMPORT = {
    "core": set(),
    "kernel": {"core"},
    "cluster": {"core"},
    "hub": {"core", "kernel"},
}


def module_name(path: Path) -> str:
    """``core.signaller`` for server/core/signaller.py, ``core`` for its __init__.py."""
    parts = list(path.relative_to(SERVER).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(SERVER.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> Iterator[str]:
    """The modules of server/ that ``path`` imports."""
    name = module_name(path).split(".")
    package = name if path.name == "__init__.py" else name[:-1]
    return imports_in(path.read_text(encoding="utf-8"), package, known)


def imports_in(source: str, package: list[str], known: set[str]) -> Iterator[str]:
    """The modules of ``known`` that ``source``, a module of ``package``, imports relatively
    (a name imported from a package that is a module of it counts as that module)."""
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        base = package[: len(package) - (node.level - 1)]
        target = ".".join([*base, *(node.module.split(".") if node.module else [])])
        for alias in node.names:
            inner = f"{target}.{alias.name}" if target else alias.name
            if inner in known:
                yield inner
            elif target in known:
                yield target


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: set(imports(path, known)) - {name} for name, path in found.items()}


def layer(module: str) -> str:
    head = module.split(".")[0]
    return head if head in MAY_IMPORT else "top"


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_folders_are_the_programs() -> None:
    assert {p.name for p in SERVER.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(
        MAY_IMPORT
    )
    tops = {p.name for p in SERVER.glob("*.py")}
    assert tops == {"__init__.py", "choose.py", "cli.py"}


def test_no_import_cycle_inside_server() -> None:
    assert cycles(graph()) == []


def test_the_arrows_point_one_way() -> None:
    wrong = [
        f"{module} ({layer(module)}) imports {other} ({layer(other)})"
        for module, targets in sorted(graph().items())
        for other in sorted(targets)
        if layer(module) != "top"
        and layer(other) != layer(module)
        and layer(other) not in MAY_IMPORT[layer(module)]
    ]
    assert wrong == []


def test_the_hub_service_and_its_kernels_client_do_not_import_each_other() -> None:
    """The service runs where the hub runs it, the client in every user's kernel: they share
    only hub/names.py."""
    edges = graph()
    assert "hub.client" not in edges["hub.service"]
    assert "hub.service" not in edges["hub.client"]


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set()}, []),
    ],
)
def test_the_cycle_finder_finds_cycles(
    edges: dict[str, set[str]], expected: list[list[str]]
) -> None:
    assert cycles(edges) == expected


def test_the_import_reader_sees_type_only_and_function_imports() -> None:
    """``from ..core import settings``, an import under TYPE_CHECKING and one in a function body
    all count; a name that is no module counts as its module."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from ..core import settings\n"
        "from ..core.registry import Member\n"
        "if TYPE_CHECKING:\n    from .sharing import KernelSignaller\n"
        "def f():\n    from ..hub.client import ServiceSignaller\n"
    )
    known = {"core.settings", "core.registry", "kernel.sharing", "hub.client", "core"}
    found = set(imports_in(source, ["kernel"], known))
    assert found == {"core.settings", "core.registry", "kernel.sharing", "hub.client"}


# -- the kernel peer -------------------------------------------------------------------------------


def reaches_into_facade(source: str, widget_modules: set[str]) -> list[str]:
    """Where ``source``, a module of widget/, imports kernelpeer.py or reads a private attribute
    of something named ``peer`` (``peer._lock``, ``self.peer._fail``)."""
    found = [
        f"imports {name}"
        for name in imports_in(source, [], widget_modules)
        if name.split(".")[0] == "kernelpeer"
    ]
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        owner = node.value
        named = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
        if named.endswith("peer") and not node.attr.startswith("__"):
            found.append(f"line {node.lineno}: {named}.{node.attr}")
    return found


def test_the_kernel_peer_s_parts_never_reach_into_its_facade() -> None:
    """KernelPeer (kernelpeer.py) shares one PeerState with its parts (peersession.py,
    peertracks.py, peerstats.py, ...); none of them imports it or touches its privates."""
    widget_modules = {path.stem for path in WIDGET.glob("*.py")}
    parts = sorted(WIDGET.glob("peer*.py"))
    assert {p.stem for p in parts} >= {"peersession", "peerstate", "peertracks", "peerstats"}
    wrong = {
        path.name: found
        for path in parts
        if (found := reaches_into_facade(path.read_text(encoding="utf-8"), widget_modules))
    }
    assert wrong == {}


def test_the_facade_check_finds_a_reach() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .kernelpeer import KernelPeer\n"
        "def f(self, peer):\n    self.peer._fail(1)\n    with peer._lock:\n        pass\n"
        "    self._own = peer.state\n"
    )
    assert reaches_into_facade(source, {"kernelpeer"}) == [
        "imports kernelpeer",
        "line 5: peer._fail",
        "line 6: peer._lock",
    ]
