"""Print hierlm's import graph: cycles (strongly connected components) and upward edges.

Every ``import`` and ``from ... import`` in ``hierlm/**/*.py`` counts, including the ones
inside functions and under ``if TYPE_CHECKING:``.  Layers are those of the import-linter
contract in pyproject.toml (lowest first).  Run: ``python scripts/import_graph.py``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "hierlm"

# Lowest first; modules in one tuple are one layer (no order among them).
LAYERS: list[tuple[str, ...]] = [
    ("hierlm.errors", "hierlm.datasets", "hierlm.heap", "hierlm.version"),
    ("hierlm.design",),
    ("hierlm.covariance",),
    ("hierlm.objective",),
    ("hierlm.estimate",),
    ("hierlm.predict", "hierlm.inference"),
    ("hierlm.results",),
    ("hierlm.model", "hierlm.plots"),
    ("hierlm", "hierlm.cli", "hierlm.demo", "hierlm.__main__"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(mod: str) -> int:
    best, best_len = len(LAYERS) - 1, -1
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if prefix == "hierlm":
                if mod == "hierlm" and best_len < 0:
                    best, best_len = i, 0
                continue
            if (mod == prefix or mod.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    return best


def resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def edges(modules: dict[str, Path]) -> set[tuple[str, str, int, bool]]:
    out: set[tuple[str, str, int, bool]] = set()
    for mod, path in modules.items():
        tree = ast.parse(path.read_text())
        local: set[int] = set()
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                for n in ast.walk(fn):
                    local.add(id(n))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = resolve(mod, path.name == "__init__.py", node)
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.append(sub if sub in modules else base)
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    out.add((mod, t, node.lineno, id(node) in local))
    return out


def sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    result: list[list[str]] = []
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                result.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return result


def main() -> int:
    modules = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}
    es = edges(modules)
    # A package's __init__ importing its own submodules is not an upward edge.
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for a, b, _, _ in es:
        graph[a].add(b)
    n_local = sum(1 for e in es if e[3])
    print(f"{len(modules)} modules, {len({(a, b) for a, b, _, _ in es})} module edges, "
          f"{len(es)} import statements ({n_local} function-local)")
    comps = sccs(graph)
    print(f"cycles (strongly connected components): {len(comps)}")
    for c in comps:
        print(f"  [{len(c)}] " + ", ".join(c))
    up = sorted((a, b, ln, loc) for a, b, ln, loc in es
                if layer_of(b) > layer_of(a))
    print(f"upward import statements: {len(up)} "
          f"(module pairs: {len({(a, b) for a, b, _, _ in up})})")
    for a, b, ln, loc in up:
        print(f"  {a}:{ln} -> {b}{' (function-local)' if loc else ''}")
    return 1 if comps or up else 0


if __name__ == "__main__":
    raise SystemExit(main())
