"""Versioned prompt templates, loaded by name@version.

A template is a Markdown file `<name>@<version>.md` in this folder with the sections `## system`
and `## user`, and optionally `## data`; `{placeholders}` are filled with str.format. A version is
never edited once used: a change is a new file, so a draft always names the exact prompt behind it.

Data blocks (`## data`: one value name per line). Text that comes from a corpus, the web, a draft,
a topic typed by a user or another model's notes is data to every prompt, never instructions. A
template lists such values under `## data`; `render()` then puts each in its own user message,
fenced by an unguessable per-call delimiter:

    <<<DATA-3f9c1a2b7e4d6f80 draft>>>
    ...the value...
    <<<END DATA-3f9c1a2b7e4d6f80 draft>>>

and the instructions (`## user`) come after the data, in the last message. `{delimiter}` may be
used in the system and user sections to tell the model which markers enclose data. A value that
contains the delimiter (it was guessed or leaked) has it removed, and the block's name is reported
in `RenderedPrompt.flagged`, so the caller can treat the text as hostile (the Editor escalates such
a draft to a human). Data values are never passed through str.format, so braces in them are inert.

    rendered = load_prompt("editor.judge@2").render(topic=..., notes=..., draft=..., schema=...)
    rendered.messages   # [system, data block per value, instructions]
    rendered.flagged    # e.g. ("draft",) when the draft held the delimiter

`messages(**values)` is `render(**values).messages`; templates without `## data` render as before.
"""
from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

PROMPTS_DIR = Path(__file__).parent
_SECTION = re.compile(r"^## (system|user|data)[ \t]*$", re.MULTILINE)


def new_delimiter() -> str:
    return f"DATA-{secrets.token_hex(8)}"


def data_block(name: str, text: str, delimiter: str) -> tuple[str, bool]:
    """One fenced data block, and whether `text` contained the delimiter (removed from it)."""
    text = "" if text is None else str(text)
    hostile = delimiter in text
    if hostile:
        text = text.replace(delimiter, "[delimiter removed]")
    return f"<<<{delimiter} {name}>>>\n{text}\n<<<END {delimiter} {name}>>>", hostile


@dataclass(frozen=True)
class RenderedPrompt:
    messages: list[dict]
    delimiter: str | None = None
    flagged: tuple[str, ...] = ()  # data blocks whose value contained the delimiter


class PromptNotFound(LookupError):
    pass


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: int
    system: str
    user: str
    data: tuple[str, ...] = field(default=())

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def render(self, **values: str) -> RenderedPrompt:
        if not self.data:
            return RenderedPrompt([
                {"role": "system", "content": self.system.format(**values).strip()},
                {"role": "user", "content": self.user.format(**values).strip()},
            ])
        delimiter = new_delimiter()
        missing = [name for name in self.data if name not in values]
        if missing:
            raise KeyError(f"prompt {self.ref} needs data {', '.join(missing)}")
        plain = {k: v for k, v in values.items() if k not in self.data}
        messages = [{"role": "system", "content": self.system.format(delimiter=delimiter, **plain).strip()}]
        flagged = []
        for name in self.data:
            block, hostile = data_block(name, values[name], delimiter)
            messages.append({"role": "user", "content": block})
            if hostile:
                flagged.append(name)
        messages.append({"role": "user", "content": self.user.format(delimiter=delimiter, **plain).strip()})
        return RenderedPrompt(messages, delimiter, tuple(flagged))

    def messages(self, **values: str) -> list[dict]:
        return self.render(**values).messages


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
    if not {"system", "user"} <= set(sections):
        raise ValueError(f"prompt {path.name} needs '## system' and '## user' sections (and optionally '## data')")
    data = tuple(line.strip() for line in sections.get("data", "").splitlines() if line.strip())
    return PromptTemplate(name, int(path.stem.split("@")[1]), sections["system"], sections["user"], data)


# Read every template at import: nodes then never touch the disk on the event loop.
_LOADED: dict[str, PromptTemplate] = {}
for _name in available():
    _LOADED[_name] = _read_prompt(_name)
    _LOADED.setdefault(_name.split("@")[0], _LOADED[_name])
for _base in {n.split("@")[0] for n in available()}:
    _LOADED[_base] = _read_prompt(_base)  # the highest version
