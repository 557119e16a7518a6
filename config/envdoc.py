"""Render the environment-variable table of README.md from the Settings model (python -m config.envdoc)."""
from __future__ import annotations

from pydantic import AliasChoices

from config.settings import Settings


def env_names(name: str, field) -> list[str]:
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(a) for a in alias.choices]
    if isinstance(alias, str):
        return [alias]
    return [f"NEWSROOM_{name.upper()}"]


def rows() -> list[tuple[str, str, str]]:
    out = []
    for name, field in Settings.model_fields.items():
        names = env_names(name, field)
        default = field.get_default(call_default_factory=True)
        if hasattr(default, "get_secret_value"):
            default = "(secret)"
        out.append((" / ".join(f"`{n}`" for n in names), f"`{default}`" if default not in (None, "") else "unset",
                    (field.description or "").replace("|", "\\|")))
    return out


def markdown_table() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows()]
    return "\n".join(lines)


START, END = "<!-- envtable:start -->", "<!-- envtable:end -->"


def with_table(readme: str) -> str:
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{markdown_table()}\n{END}{tail}"


if __name__ == "__main__":
    import sys
    from pathlib import Path

    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        path = Path(sys.argv[2])
        path.write_text(with_table(path.read_text()))
    else:
        print(markdown_table())
