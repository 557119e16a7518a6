"""Structure rules: SQL lives in storage/ only; imports flow service -> graphs -> agents -> tools -> storage."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["service", "graphs", "agents", "tools", "storage"]  # each may import only those to its right
SQL = re.compile(r"\b(SELECT\s+[\w*(),.\s]+\s+FROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX|EXTENSION)"
                 r"|ALTER\s+(TABLE|SYSTEM)|DROP\s+TABLE)\b", re.IGNORECASE)


def _py_files(top: str):
    return [p for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts]


def _string_constants(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_no_sql_outside_storage():
    offenders = []
    for top in ["service", "graphs", "agents", "tools", "config", "evals"]:
        for path in _py_files(top):
            for line, text in _string_constants(path):
                if SQL.search(text):
                    offenders.append(f"{path.relative_to(ROOT)}:{line}: {text.strip()[:60]!r}")
    assert offenders == [], "SQL outside storage/:\n" + "\n".join(offenders)


def test_imports_flow_one_way():
    offenders = []
    for i, layer in enumerate(LAYERS):
        forbidden = set(LAYERS[:i + 1]) - {layer}  # upward (and sideways to itself is fine)
        for path in _py_files(layer):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                for name in names:
                    if name.split(".")[0] in forbidden:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert offenders == [], "imports against the layering:\n" + "\n".join(offenders)


def test_config_is_a_leaf():
    for path in _py_files("config"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+(service|graphs|agents|tools|storage)\b", text, re.MULTILINE), path
