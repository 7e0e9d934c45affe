"""The package's imports go one way: no cycles, and each layer imports only those below it.

The graph is read from the source (every `import` of the package, function-level ones
included, those under `if TYPE_CHECKING:` excluded, since they never run), so a cycle
hidden inside a function is found too.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

import infobip_voicelogs

PACKAGE = "infobip_voicelogs"
ROOT = Path(infobip_voicelogs.__file__).parent

# What each part of the package may import of ours, from the design's table of layers.
# The leaves (stdlib only, nothing of ours) may be imported by every layer.
LEAVES = frozenset({"__about__", "_time", "defaults", "errors", "redaction", "telemetry"})
BELOW_FETCHER = frozenset({"models", "codec", "auth", "throttle", "retry", "endpoint", "window"})
MAY_IMPORT: dict[str, frozenset[str]] = {
    **{leaf: frozenset() for leaf in LEAVES},
    "models": frozenset(),
    "codec": frozenset({"models"}),
    "auth": frozenset(),
    "throttle": frozenset(),
    "retry": frozenset(),
    "endpoint": frozenset(),
    # The bucket derives its key from the account's credential the way `auth` sends it.
    "redis": frozenset({"throttle", "auth"}),
    "window": frozenset({"models"}),
    # The one place that decides about a message's state (fingerprints, finality).
    "state": frozenset({"models"}),
    # The pull side of reports (`pull_reports`) decodes on the reports' codec.
    "fetcher": BELOW_FETCHER | {"reports"},
    # The poller's own HTTP client: a pool per host (httpx only, nothing of ours).
    "connections": frozenset(),
    "store": frozenset({"models"}),
    "postgres": frozenset({"store", "models"}),
    # The one way to the handler: decides states, hands over, commits through the store.
    "delivery": frozenset({"models", "state", "store"}),
    # The poller reads the inbox's reports with the reports' codec.
    "poller": BELOW_FETCHER | {"fetcher", "store", "state", "connections", "delivery", "reports"},
    # The push side: reports decode on the codec, record in the store's inbox, and a
    # receiver given a handler delivers through the delivery core.
    "reports": frozenset({"codec", "models", "state", "store", "telemetry", "delivery"}),
    # The archive as numbers: SQL over either store's archive (PostgreSQL's is `postgres`).
    "analytics": frozenset({"store", "models", "postgres"}),
    # The fake pushes reports, so it encodes them with the reports' codec.
    "testing": frozenset({"codec", "models", "reports"}),
    # What serves a poller's health to a process manager: the CLI and applications use it.
    "health": frozenset({"poller", "delivery"}),
    # The CLI serves the reports receiver beside the poller; the demo judges states by `state`.
    "cli": BELOW_FETCHER
    | {"fetcher", "store", "poller", "testing", "redis", "postgres", "health", "connections"}
    | {"reports", "state", "delivery", "analytics"},
    # The package's face re-exports the library, never the command line or the fake.
    "": BELOW_FETCHER | {"fetcher", "store", "poller", "redis", "postgres", "delivery"},
}
# Who may talk HTTP: below the fetcher only `auth` (an httpx.Auth) and `endpoint` (its URLs).
HTTPX_USERS = frozenset({"auth", "endpoint", "fetcher", "connections", "poller", "testing", "cli"})


@functools.cache
def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package at ``root`` by dotted name (a package by its own name)."""
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def runtime_imports(
    tree: ast.AST, *, typing: bool = False
) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run: all of them but those under `if TYPE_CHECKING:`
    (those too with ``typing=True``)."""
    for node in ast.iter_child_nodes(tree):
        if not typing and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for other in node.orelse:
                yield from runtime_imports(other)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from runtime_imports(node, typing=typing)


def imported(
    name: str, path: Path, known: dict[str, Path], *, typing: bool = False
) -> tuple[set[str], set[str]]:
    """The package's modules that ``name`` imports, and the other top-level names it does
    (with ``typing=True``, those imported only for the type checker too)."""
    ours: set[str] = set()
    theirs: set[str] = set()
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in runtime_imports(tree, typing=typing):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif node.level:
            base = here[: len(here) - node.level + 1]
            module = ".".join([*base, *([node.module] if node.module else [])])
            targets = [f"{module}.{alias.name}" for alias in node.names] + [module]
        else:
            module = node.module or ""
            targets = [f"{module}.{alias.name}" for alias in node.names] + [module]
        for target in targets:
            if target.partition(".")[0] != name.partition(".")[0]:
                theirs.add(target.partition(".")[0])
            elif target in known:
                ours.add(target)
                break  # `from .x import y`: y is x's submodule, else x itself is meant
    return ours, theirs


@functools.cache
def graph(root: Path = ROOT) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imported(name, path, known)[0] for name, path in known.items()}


def layer(module: str) -> str:
    """The part of the package a module belongs to: `codec.json` is `codec`."""
    return module.removeprefix(PACKAGE).lstrip(".").partition(".")[0]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a self-import
    (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges[node]:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert sorted(cycles(edges)) == [["a", "b", "c"], ["e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_a_cycle_hidden_in_a_function_is_found_and_a_typing_import_is_not_one(
    tmp_path: Path,
) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .one import A\n")
    (package / "sub" / "one.py").write_text("def f():\n    from ..two import B\n")
    (package / "two.py").write_text("from .sub import one\n")
    (package / "three.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import two\n"
    )
    edges = graph(package)
    assert edges["pkg.sub"] == {"pkg.sub.one"}
    assert edges["pkg.three"] == set()
    assert cycles(edges) == [["pkg.sub.one", "pkg.two"]]


def test_the_package_has_no_import_cycle() -> None:
    edges = graph()
    assert len(edges) > 30  # the walk saw the whole package
    assert cycles(edges) == []


def test_every_part_of_the_package_has_a_place_in_the_layers() -> None:
    unplaced = sorted({layer(name) for name in modules()} - set(MAY_IMPORT))
    assert unplaced == [], "add new modules to MAY_IMPORT, with what they may import"


@pytest.mark.parametrize("name", sorted(modules()))
def test_imports_go_downward(name: str) -> None:
    own = layer(name)
    allowed = MAY_IMPORT.get(own, frozenset()) | LEAVES | {own}
    upward = sorted(target for target in graph()[name] if layer(target) not in allowed)
    assert upward == [], f"{name} imports above its layer"


@pytest.mark.parametrize("name", sorted(modules()))
def test_only_the_http_layers_import_httpx(name: str) -> None:
    _, theirs = imported(name, modules()[name], modules())
    if "httpx" in theirs:
        assert layer(name) in HTTPX_USERS


def test_models_import_no_parsing_code() -> None:
    _, theirs = imported(f"{PACKAGE}.models", ROOT / "models.py", modules())
    assert theirs <= {"__future__", "attrs", "enum", "collections", "datetime", "decimal", "typing"}


# Where a part's own branch still has to move off another part's private modules
# (`store.kit`, `postgres.kit` and `codec` offer every name these take).
PENDING_PRIVATE_IMPORTS: frozenset[tuple[str, str]] = frozenset()
PENDING_PRIVATE_ALL: frozenset[str] = frozenset()


def is_private(module: str) -> bool:
    """Whether `module` is a part's private module: `store._archive` is, `_time` (a leaf
    of the package's own) and `store.kit` are not."""
    return any(part.startswith("_") and not part.startswith("__") for part in module.split(".")[2:])


def private_imports(root: Path = ROOT) -> set[tuple[str, str]]:
    """Each (module, private module of another part) it imports, those imported only for
    the type checker included, both without the package's name."""
    known = modules(root)
    found = set()
    for name, path in known.items():
        ours, _ = imported(name, path, known, typing=True)
        for target in ours:
            if is_private(target) and target.split(".")[1] != name.split(".")[1]:
                found.add((name.partition(".")[2], target.partition(".")[2]))
    return found


def private_with_all(root: Path = ROOT) -> set[str]:
    """The private modules that list names in `__all__` (a part's `__init__` lists them)."""
    found = set()
    for name, path in modules(root).items():
        if not path.name.startswith("_") or path.name.startswith("__"):
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, ast.AnnAssign | ast.AugAssign):
                targets = [node.target]
            if any(isinstance(target, ast.Name) and target.id == "__all__" for target in targets):
                found.add(name.partition(".")[2])
    return found


def test_the_private_import_finder_finds_one_under_type_checking(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    for part in ("one", "two"):
        (package / part).mkdir(parents=True)
        (package / part / "__init__.py").write_text("")
        (package / part / "_inner.py").write_text("__all__ = ['X']\nX = 1\n")
    (package / "__init__.py").write_text("")
    (package / "_leaf.py").write_text("")
    (package / "one" / "kit.py").write_text("from ._inner import X\n__all__ = ['X']\n")
    (package / "two" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..one._inner import X\n"
    )
    (package / "two" / "b.py").write_text("from .._leaf import *\nfrom ..one import _inner\n")
    (package / "two" / "c.py").write_text("from ..one.kit import X\nfrom . import _inner\n")
    assert private_imports(package) == {("two.a", "one._inner"), ("two.b", "one._inner")}
    assert private_with_all(package) == {"one._inner", "two._inner"}


def test_no_part_imports_another_parts_private_modules() -> None:
    """What two parts share lives in a module both may import (`codec.kit`, `store.kit`)."""
    assert sorted(private_imports() - PENDING_PRIVATE_IMPORTS) == []


def test_private_modules_list_nothing_in_all() -> None:
    """A part's public names are listed once, in its `__init__` (or a public module's)."""
    assert sorted(private_with_all() - PENDING_PRIVATE_ALL) == []
