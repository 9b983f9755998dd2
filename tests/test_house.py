"""The rules of the house (DESIGN.md), checked against the code so they cannot drift silently."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from service import words
from service.store.migrations import MIGRATIONS

SERVICE = Path(__file__).resolve().parent.parent / "service"


def _modules() -> dict[str, Path]:
    found = {}
    for path in SERVICE.rglob("*.py"):
        parts = list(path.relative_to(SERVICE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of ours that ``name`` imports anywhere (lazy imports too), except under ``if TYPE_CHECKING``.
    ``from package import submodule`` counts as importing the submodule only."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    deps: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            deps.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            submodules = {f"{base}.{alias.name}" for alias in node.names} & known
            deps.update(submodules or {base})
    return (deps & known) - {name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in graph[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_among_service_modules():
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _sources() -> dict[str, str]:
    return {str(path.relative_to(SERVICE)): path.read_text() for path in SERVICE.rglob("*.py")}


def test_a_route_is_written_in_one_place():
    """Only the store's ``_set_route`` writes ``images.route`` or mirrors it onto media statuses."""
    writers = {
        name for name, text in _sources().items()
        if re.search(r"UPDATE images SET (?:(?!WHERE)[^\"])*\broute\b", text)
        or re.search(r"UPDATE media SET status = \?[^\"]*image_id", text)
    }
    assert writers == {"store/base.py"}


def test_each_word_is_defined_once():
    for word in ("Verdict", "Label", "ScoreKind", "Route", "MediaStatus"):
        homes = {name for name, text in _sources().items() if re.search(rf"^{word} = Literal\[", text, re.M)}
        assert homes == {"words.py"}, (word, homes)
    assert len({name for name, text in _sources().items() if "UNDO_DEPTH = " in text}) == 1
    assert len({name for name, text in _sources().items() if re.search(r"IMAGE_(SUFFIXES|EXTENSIONS) = ", text)}) == 1


def _check_values(column: str) -> list[set[str]]:
    """Every closed vocabulary the schema gives ``column`` (a CHECK on it, in any table)."""
    schema = "\n".join(MIGRATIONS)
    found = re.findall(rf"CHECK \({column} IN \(([^)]*)\)\)", schema)
    assert found, column
    return [{value.strip(" '") for value in values.split(",")} for values in found]


def test_the_schema_spells_the_words_as_the_code_does():
    assert _check_values("verdict") == [set(words.VERDICTS)]
    assert _check_values("label") == [set(words.LABELS)]
    assert _check_values("route") == [set(words.ROUTES)]
    assert _check_values("routed_by") == [set(words.ROUTED_BY)]
    assert _check_values("reason") == [set(words.QUEUE_REASONS)]
    assert set(words.MEDIA_STATUSES) in _check_values("status")  # media's; the outbox has statuses of its own
