"""The import graph has no cycle: the app does not import its agents (Faust imports them when a worker
starts), and no module needs another imported first."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Where each package of the one import root lives (pyproject's package-dir).
PACKAGE_DIRS = {
    "recstream": ROOT / "recstream",
    "recstream.agents": ROOT / "agents",
    "recstream.tables": ROOT / "tables",
    "recstream.training": ROOT / "training",
    "recstream.web": ROOT / "web",
}


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if "node_modules" in rel.parts:
                continue
            found[".".join([package, *parts])] = path
    return found


def top_level_imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Modules imported when this module is imported (imports inside functions run later: not edges)."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    out: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name in known)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name if is_package else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}".rstrip(".")
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    out.add(full if full in known else base)
            elif isinstance(node, (ast.If, ast.Try)):  # TYPE_CHECKING blocks do not run: skip those
                test = getattr(node, "test", None)
                if not (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"):
                    visit(node.body)
                    for handler in getattr(node, "handlers", []):
                        visit(handler.body)
                    visit(getattr(node, "orelse", []))

    visit(tree.body)
    return {m for m in out if m in known and m != name}


def test_the_import_graph_has_no_cycle() -> None:
    found = modules()
    graph = {name: top_level_imports(path, name, set(found)) for name, path in found.items()}
    assert "recstream.agents" not in graph["recstream.streaming.app"]
    # Depth-first search; a back edge is a cycle.
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            # A package's own __init__ importing its submodules is not a cycle with them.
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                if not node.startswith(nxt + "."):
                    cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_every_package_is_in_the_distribution() -> None:
    """A non-editable install (the Docker image) gets only the packages pyproject lists."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {name for name, path in modules().items() if path.name == "__init__.py"}
    assert packages == listed, {
        "missing": sorted(packages - listed),
        "not a package": sorted(listed - packages),
    }


def role_violations(roles: tuple[str, ...]) -> list[str]:
    """Imports from a module of one of `roles` into another role's package (the root is shared)."""
    found = modules()
    packages = {n for n, p in found.items() if p.name == "__init__.py" and n.count(".") == 1}

    def role(name: str) -> str:
        top = ".".join(name.split(".")[:2])
        return top if top in packages else "recstream"

    return [
        f"{name} imports {dep}"
        for name in found
        if role(name) in roles
        for dep in top_level_imports(found[name], name, set(found))
        if role(dep) not in ("recstream", role(name))
    ]


def test_the_root_and_the_serving_path_import_no_other_role() -> None:
    """The root is what every role shares, and the serving path stays free of Faust, Spark and tooling."""
    assert role_violations(("recstream", "recstream.kafka", "recstream.serving")) == []
    # The check sees real imports: the agents do use the streaming app.
    assert any("recstream.streaming" in v for v in role_violations(("recstream.agents",)))
