"""The subpackages of mmrl import each other without cycles (each can be read and tested
from the bottom up)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mmrl"


def package_imports() -> dict[str, set[str]]:
    """subpackage -> the other mmrl subpackages its modules import (at any depth of the file)."""
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    edges: dict[str, set[str]] = {name: set() for name in subpackages}
    for name in subpackages:
        for f in (PACKAGE / name).rglob("*.py"):
            for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    modules = [node.module]
                elif isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                else:
                    continue
                for m in modules:
                    parts = m.split(".")
                    if parts[0] == "mmrl" and len(parts) > 1 and parts[1] in subpackages and parts[1] != name:
                        edges[name].add(parts[1])
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_subpackages_import_each_other_without_cycles():
    assert find_cycle(package_imports()) is None
