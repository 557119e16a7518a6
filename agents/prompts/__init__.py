"""Versioned prompt templates, loaded by name@version.

A template is a Markdown file `<name>@<version>.md` in this folder with two sections,
`## system` and `## user`; `{placeholders}` are filled with str.format. A version is never
edited once used: a change is a new file, so a draft always names the exact prompt behind it.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

PROMPTS_DIR = Path(__file__).parent
_SECTION = re.compile(r"^## (system|user)\s*$", re.MULTILINE)


class PromptNotFound(LookupError):
    pass


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: int
    system: str
    user: str

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def messages(self, **values: str) -> list[dict]:
        return [
            {"role": "system", "content": self.system.format(**values).strip()},
            {"role": "user", "content": self.user.format(**values).strip()},
        ]


def available() -> list[str]:
    return sorted(p.stem for p in PROMPTS_DIR.glob("*@*.md"))


def load_prompt(ref: str) -> PromptTemplate:
    """Load 'name@version' (or 'name' for its highest version); templates are read once, at import."""
    if ref in _LOADED:
        return _LOADED[ref]
    return _read_prompt(ref)


@functools.lru_cache(maxsize=64)
def _read_prompt(ref: str) -> PromptTemplate:
    """Load 'name@version' (or 'name' for its highest version)."""
    if "@" in ref:
        name, _, ver = ref.partition("@")
        path = PROMPTS_DIR / f"{name}@{ver}.md"
    else:
        name = ref
        versions = sorted((int(p.stem.split("@")[1]), p) for p in PROMPTS_DIR.glob(f"{name}@*.md"))
        if not versions:
            raise PromptNotFound(f"no prompt named {ref!r}; available: {', '.join(available())}")
        path = versions[-1][1]
    if not path.exists():
        raise PromptNotFound(f"no prompt {ref!r}; available: {', '.join(available())}")
    parts = _SECTION.split(path.read_text())
    sections = dict(zip(parts[1::2], parts[2::2]))
    if set(sections) != {"system", "user"}:
        raise ValueError(f"prompt {path.name} needs exactly '## system' and '## user' sections")
    return PromptTemplate(name, int(path.stem.split("@")[1]), sections["system"], sections["user"])


# Read every template at import: nodes then never touch the disk on the event loop.
_LOADED: dict[str, PromptTemplate] = {}
for _name in available():
    _LOADED[_name] = _read_prompt(_name)
    _LOADED.setdefault(_name.split("@")[0], _LOADED[_name])
for _base in {n.split("@")[0] for n in available()}:
    _LOADED[_base] = _read_prompt(_base)  # the highest version
