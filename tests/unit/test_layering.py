"""Structure rules: SQL lives in storage/ only; imports flow one way,
evals -> service -> graphs -> agents -> tools -> storage (config is a leaf); agents/ does no
database I/O; no import circle between files. Every import counts: module level, inside functions,
under TYPE_CHECKING."""
import ast
import re
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Each may import only itself and those to its right. evals/ sits beside service/ at the top: the
# drills and benchmarks drive the service (evals -> service), and nothing below imports evals.
LAYERS = ["evals", "service", "graphs", "agents", "tools", "storage"]
PACKAGES = [*LAYERS, "config"]
SQL = re.compile(r"\b(SELECT\s+[\w*(),.\s]+\s+FROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX|EXTENSION)"
                 r"|ALTER\s+(TABLE|SYSTEM)|DROP\s+TABLE)\b", re.IGNORECASE)

# No known violations are left (service/'s were removed by the issue 17 restructuring): every
# upward import and every import circle between files fails.
ALLOWED_UPWARD: set[tuple[str, str]] = set()
ALLOWED_CIRCLES: set[frozenset[str]] = set()


def _py_files(top: str):
    return [p for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts]


def _string_constants(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def _module_file(dotted: str) -> str | None:
    """The project file a dotted module name is (a package: its __init__.py), or None."""
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate.relative_to(ROOT).as_posix()
    return None


def _package_of(rel: str) -> str:
    # a/b/c.py and a/b/__init__.py both resolve relative imports against package a.b
    return ".".join(rel[:-3].split("/")[:-1])


@cache
def _imports(rel: str) -> tuple[tuple[int, str, str], ...]:
    """(line, module name as written, project file it names) for every import in the file. `from
    pkg import name` names pkg/name.py when that is a module, else pkg's __init__.py."""
    out = []
    for node in ast.walk(ast.parse((ROOT / rel).read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] not in PACKAGES:
                    continue
                for n in range(len(parts), 0, -1):  # `import a.b.c` runs a, a.b and a.b.c: name the deepest
                    target = _module_file(".".join(parts[:n]))
                    if target:
                        out.append((node.lineno, alias.name, target))
                        break
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = _package_of(rel).split(".")
                pkg = pkg[:len(pkg) - node.level + 1]
                module = ".".join([*pkg, node.module] if node.module else pkg)
            else:
                module = node.module or ""
            if module.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                target = _module_file(f"{module}.{alias.name}") or _module_file(module)
                if target:
                    out.append((node.lineno, module, target))
    return tuple(dict.fromkeys(out))  # one entry per (line, module, file): `from m import a, b` is one arrow


def _project_files() -> list[str]:
    return sorted(p.relative_to(ROOT).as_posix() for top in PACKAGES for p in _py_files(top))


def _graph() -> dict[str, set[str]]:
    return {rel: {target for _, _, target in _imports(rel) if target != rel} for rel in _project_files()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one file (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start, targets in graph.items():
        if start in index:
            continue
        work = [(start, iter(sorted(targets)))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
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
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _allowed_circle(component: list[str], graph: dict[str, set[str]]) -> bool:
    """A circle is allowed only when it is exactly an allowlisted pair importing each other."""
    return (len(component) == 2 and frozenset(component) in ALLOWED_CIRCLES
            and component[1] in graph[component[0]] and component[0] in graph[component[1]])


def test_no_sql_outside_storage():
    offenders = []
    for top in ["service", "graphs", "agents", "tools", "config", "evals"]:
        for path in _py_files(top):
            for line, text in _string_constants(path):
                if SQL.search(text):
                    offenders.append(f"{path.relative_to(ROOT)}:{line}: {text.strip()[:60]!r}")
    assert offenders == [], "SQL outside storage/:\n" + "\n".join(offenders)


def test_imports_flow_one_way():
    offenders, allowed_seen = [], set()
    for i, layer in enumerate(LAYERS):
        forbidden = set(LAYERS[:i])  # everything to its left
        for path in _py_files(layer):
            rel = path.relative_to(ROOT).as_posix()
            for line, name, target in _imports(rel):
                if target.split("/")[0] in forbidden:
                    if (rel, target) in ALLOWED_UPWARD:
                        allowed_seen.add((rel, target))
                        continue
                    offenders.append(f"{rel}:{line} imports {name} ({target})")
    assert offenders == [], "imports against the layering:\n" + "\n".join(offenders)
    stale = ALLOWED_UPWARD - allowed_seen
    assert not stale, f"allowlisted upward imports that no longer exist (delete them from ALLOWED_UPWARD): {stale}"


def test_config_is_a_leaf():
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                 for path in _py_files("config") for line, name, target in _imports(path.relative_to(ROOT).as_posix())
                 if not target.startswith("config/")]
    assert offenders == [], "config/ imports the project:\n" + "\n".join(offenders)


def test_agents_do_no_database_io():
    """agents/ holds the desks' decisions: the database is reached through graphs/ (graphs/ledger.py)."""
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                 for path in _py_files("agents") for line, name, target in _imports(path.relative_to(ROOT).as_posix())
                 if target.startswith("storage/")]
    assert offenders == [], "agents/ imports storage/:\n" + "\n".join(offenders)


def test_no_import_circle_between_files():
    graph = _graph()
    circles = _circles(graph)
    unexpected = [c for c in circles if not _allowed_circle(c, graph)]
    assert unexpected == [], "import circles:\n" + "\n".join(" <-> ".join(c) for c in unexpected)
    present = {frozenset(c) for c in circles}
    stale = ALLOWED_CIRCLES - present
    assert not stale, f"allowlisted circles that no longer exist (delete them from ALLOWED_CIRCLES): {stale}"


def test_the_checks_see_function_level_imports_and_circles(tmp_path, monkeypatch):
    """The checker itself: a lazy import inside a function is an edge, and a two-file circle made of
    one is found (the kind the earlier version of this test let through)."""
    pkg = tmp_path / "tools"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from tools.b import g\n\ndef f():\n    return g()\n")
    (pkg / "b.py").write_text("def g():\n    from tools.a import f  # lazy, to dodge the circle\n    return f\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    _imports.cache_clear()
    try:
        graph = {rel: {t for _, _, t in _imports(rel)} for rel in ("tools/__init__.py", "tools/a.py", "tools/b.py")}
        assert graph["tools/b.py"] == {"tools/a.py"}
        assert _circles(graph) == [["tools/a.py", "tools/b.py"]]
    finally:
        _imports.cache_clear()
