"""Structure-aware chunking for Markdown, plain text and HTML.

Why not fixed-size windows: in the seed's Phase 12, a 400-word window split the answer to "why did
DPO replace PPO-based RLHF" across a chunk boundary; retrieval scored a hit while the generator
correctly said the context did not contain the answer (hit rate 100%, answer relevancy 0.000).
And all-MiniLM-L6-v2 silently truncates at 256 tokens (~190 words), so a 400-word chunk would be
embedded by its first half only.

The rules here:
- the document is parsed into headings and blocks (paragraphs, lists, tables, code fences);
- a chunk holds whole blocks of one section (heading path); a small section is merged into the
  next chunk rather than left as a fragment (its heading is kept inline);
- a block larger than the budget is split at sentence ends, never inside a sentence (only a
  single sentence longer than the whole budget is cut at word boundaries, as a last resort);
- consecutive chunks of one section overlap by whole trailing sentences (up to overlap_tokens);
- the budget is the embedder's max sequence length in the embedder's own tokens, and it covers
  what is actually embedded: a context line (title > heading path) plus the chunk text. Every
  chunk is verified with the exact token count.
"""
from __future__ import annotations

import hashlib
import html
import html.parser
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CHUNKER_VERSION = "2"
TokenCounter = Callable[[list[str]], list[int]]  # texts -> token counts, special tokens included

SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text",
            ".html": "html", ".htm": "html"}


class ChunkingError(ValueError):
    pass


@dataclass
class Block:
    kind: str  # heading | para | code
    text: str
    level: int = 0


@dataclass
class ParsedDocument:
    title: str
    blocks: list[Block]
    metadata: dict = field(default_factory=dict)


@dataclass
class Chunk:
    ordinal: int
    heading_path: str
    content: str  # the chunk's text (overlap included), as shown to the LLM
    embed_text: str  # context line + content: exactly what is embedded
    tokens: int  # exact token count of embed_text, specials included
    content_hash: str  # sha256 of embed_text
    overlap: str = ""  # the leading text repeated from the previous chunk ("" if none)


# --- parsing ----------------------------------------------------------------------------------

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
# The opening of an ATX heading only; its text and closing #s are trimmed with str methods (the
# one-regex form `(.*?)\s*#*\s*$` was cubic: one 1.5 KB heading line took 12.8 s at ingest).
_ATX_OPEN = re.compile(r"\s{0,3}(#{1,6})\s+")


def atx_heading(line: str) -> tuple[int, str] | None:
    """(level, text) of a `# Heading ##` line, or None."""
    m = _ATX_OPEN.match(line)
    if m is None:
        return None
    return len(m.group(1)), line[m.end():].rstrip().rstrip("#").strip()
_SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")


def _parse_front_matter(text: str) -> tuple[dict, str]:
    if not text.startswith("---\n"):
        return {}, text
    end = text.find("\n---", 4)
    if end < 0:
        return {}, text
    meta: dict = {}
    for line in text[4:end].splitlines():
        if ":" not in line:
            continue
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not key:
            continue
        if value.startswith("[") and value.endswith("]"):
            meta[key] = [v.strip().strip("'\"") for v in value[1:-1].split(",") if v.strip()]
        else:
            meta[key] = value.strip("'\"")
    rest = text[end + 4:]
    return meta, rest.removeprefix("\n")


def parse_markdown(text: str, *, fallback_title: str = "") -> ParsedDocument:
    meta, body = _parse_front_matter(text.replace("\r\n", "\n"))
    blocks: list[Block] = []
    para: list[str] = []
    fence: str | None = None
    code: list[str] = []

    def flush() -> None:
        if para:
            joined = "\n".join(para).strip()
            if joined:
                blocks.append(Block("para", joined))
            para.clear()

    for line in body.split("\n"):
        if fence is not None:
            code.append(line)
            if line.strip().startswith(fence):
                blocks.append(Block("code", "\n".join(code)))
                fence, code = None, []
            continue
        m = _FENCE.match(line)
        if m:
            flush()
            fence, code = m.group(1)[0] * 3, [line]
            continue
        heading = atx_heading(line)
        if heading is not None:
            flush()
            blocks.append(Block("heading", heading[1], heading[0]))
            continue
        if _SETEXT.match(line) and len(para) == 1 and para[0].strip():
            level = 1 if line.strip().startswith("=") else 2
            blocks.append(Block("heading", para[0].strip(), level))
            para.clear()
            continue
        if not line.strip():
            flush()
        else:
            para.append(line.rstrip())
    flush()
    if code:
        blocks.append(Block("code", "\n".join(code)))
    title = str(meta.get("title") or "").strip()
    if not title:
        title = next((b.text for b in blocks if b.kind == "heading" and b.level == 1), "") or fallback_title
    return ParsedDocument(title=title, blocks=blocks, metadata=meta)


def parse_text(text: str, *, fallback_title: str = "") -> ParsedDocument:
    paras = [p.strip() for p in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if p.strip()]
    return ParsedDocument(title=fallback_title, blocks=[Block("para", p) for p in paras])


class _HTMLBlocks(html.parser.HTMLParser):
    BLOCK = frozenset({"p", "div", "section", "article", "main", "header", "ul", "ol", "table", "tr", "blockquote",
             "figure", "figcaption", "dl", "dt", "dd", "br", "hr", "aside"})
    SKIP = frozenset({"script", "style", "noscript", "template", "svg", "nav", "footer", "head"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.title = ""
        self._buf: list[str] = []
        self._skip = 0
        self._in_title = False
        self._heading: int | None = None
        self._pre = 0

    def _flush(self) -> None:
        raw = "".join(self._buf)
        self._buf = []
        if self._pre:
            text = raw.strip("\n")
        else:
            text = re.sub(r"[ \t\r\f\v]+", " ", raw)
            text = "\n".join(s.strip() for s in text.split("\n") if s.strip())
        if not text.strip():
            return
        if self._heading:
            self.blocks.append(Block("heading", " ".join(text.split()), self._heading))
        elif self._pre:
            self.blocks.append(Block("code", text))
        else:
            self.blocks.append(Block("para", text))

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self._in_title = True
        if tag in self.SKIP:
            self._skip += 1
            return
        if self._skip:
            return
        if re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self._heading = int(tag[1])
        elif tag == "pre":
            self._flush()
            self._pre += 1
        elif tag == "li":
            self._buf.append("\n- ")
        elif tag in ("td", "th"):
            self._buf.append(" | ")
        elif tag in self.BLOCK and not self._pre:
            if tag in ("br",):
                self._buf.append("\n")
            else:
                self._flush()

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
            return
        if self._skip:
            return
        if re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self._heading = None
        elif tag == "pre":
            self._flush()
            self._pre = max(0, self._pre - 1)
        elif tag in self.BLOCK and tag not in ("br", "hr") and not self._pre and tag not in ("ul", "ol") or tag in ("ul", "ol"):
            self._flush()

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        if self._skip:
            return
        self._buf.append(data)

    def close(self):
        super().close()
        self._flush()


def parse_html(text: str, *, fallback_title: str = "") -> ParsedDocument:
    p = _HTMLBlocks()
    p.feed(text)
    p.close()
    title = " ".join(html.unescape(p.title).split())
    if not title:
        title = next((b.text for b in p.blocks if b.kind == "heading" and b.level == 1), "") or fallback_title
    return ParsedDocument(title=title, blocks=p.blocks)


def parse_document(text: str, kind: str, *, fallback_title: str = "") -> ParsedDocument:
    if kind == "markdown":
        return parse_markdown(text, fallback_title=fallback_title)
    if kind == "html":
        return parse_html(text, fallback_title=fallback_title)
    if kind == "text":
        return parse_text(text, fallback_title=fallback_title)
    raise ChunkingError(f"unsupported document kind {kind!r}")


def kind_for(path: Path) -> str | None:
    return SUFFIXES.get(path.suffix.lower())


# --- sentences ---------------------------------------------------------------------------------

_ABBREV = {"e.g", "i.e", "vs", "etc", "dr", "mr", "mrs", "ms", "fig", "approx", "cf", "al", "no", "eq", "sec",
           "p", "pp", "vol", "incl", "resp", "st"}
# A boundary: end punctuation (+ closing quotes/brackets) then whitespace, and the next sentence
# starting like one; or a line break before a list item / table row.
# (Bounded look-ahead: `\n(?=\s*...)` rescanned every following blank line from each one.)
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]{0,8}(\s+)(?=[\"'(\[]?[A-Z0-9`*_])|(\n)(?=\s{0,32}(?:[-*+]\s|\d+[.)]\s|\|))")


def split_sentences(text: str) -> list[tuple[str, str]]:
    """[(separator_before, sentence)]: the pieces rejoin (sep + sentence) to the text, stripped."""
    out: list[tuple[str, str]] = []
    start = 0
    sep = ""
    for m in _BOUNDARY.finditer(text):
        cut = m.start(1) if m.group(1) is not None else m.start(2)
        piece = text[start:cut]
        if m.group(1) is not None:
            tail = piece[-24:]  # an abbreviation or an initial is short: never scan the whole piece
            word = re.search(r"([A-Za-z.]+)\.[\"')\]]*$", tail)
            if word and word.group(1).lower().rstrip(".") in _ABBREV:
                continue  # "e.g. This" is not a sentence end
            if re.search(r"\b[A-Z]\.$", tail):  # an initial: "J. Smith"
                continue
        if piece.strip():
            out.append((sep, piece.strip()))
        sep = "\n" if "\n" in m.group(0) else " "
        start = m.end()
    tail = text[start:]
    if tail.strip():
        out.append((sep, tail.strip()))
    if out:
        out[0] = ("", out[0][1])
    return out


def _join(pieces: Sequence[tuple[str, str]]) -> str:
    return "".join(sep + s for sep, s in pieces).strip()


# --- chunking ----------------------------------------------------------------------------------

@dataclass
class _Part:
    text: str  # a whole block, or a sentence of an oversize block
    tokens: int
    sep: str  # separator before it inside the chunk ("\n\n" between blocks)
    sentences: list[tuple[str, str]] | None = None  # for overlap


@dataclass
class _Open:
    path: tuple[str, ...]
    parts: list[_Part] = field(default_factory=list)
    tokens: int = 0
    overlap: str = ""


def context_line(title: str, path: Sequence[str]) -> str:
    items = list(path)
    if title and (not items or items[0] != title):
        items.insert(0, title)
    return " > ".join(items)


def chunk_document(doc: ParsedDocument, count: TokenCounter, *, max_tokens: int, overlap_tokens: int = 32,
                   min_tokens: int = 64) -> list[Chunk]:
    """Chunks whose embed_text never exceeds max_tokens (exact count by `count`)."""
    if max_tokens < 32:
        raise ChunkingError(f"max_tokens={max_tokens} is too small to hold a sentence")
    specials = count([""])[0]
    slack = 0
    for _ in range(8):
        chunks = _pack(doc, count, specials, max_tokens - slack, overlap_tokens, min_tokens)
        exact = count([c.embed_text for c in chunks]) if chunks else []
        over = [n - max_tokens for n in exact if n > max_tokens]
        if not over:
            for c, n in zip(chunks, exact):
                c.tokens = n
            return chunks
        slack += max(over) + 1  # token counts were not additive here (rare): pack tighter
    raise ChunkingError("could not fit chunks under the embedder's max tokens")


def _pack(doc: ParsedDocument, count: TokenCounter, specials: int, limit: int, overlap_tokens: int,
          min_tokens: int) -> list[Chunk]:
    # 1. sections: (heading path, heading line to show if merged, [blocks])
    sections: list[tuple[tuple[str, ...], str, list[Block]]] = []
    stack: list[tuple[int, str]] = []
    for b in doc.blocks:
        if b.kind == "heading":
            while stack and stack[-1][0] >= b.level:
                stack.pop()
            stack.append((b.level, b.text))
            sections.append((tuple(t for _, t in stack), "#" * b.level + " " + b.text, []))
        else:
            if not sections:
                sections.append(((), "", []))
            sections[-1][2].append(b)
    sections = [s for s in sections if s[2]]
    if not sections:
        return []

    # 2. token counts in batches
    block_texts = [b.text for _, _, bl in sections for b in bl]
    heading_lines = [h for _, h, _ in sections]
    contexts = sorted({context_line(doc.title, p) for p, _, _ in sections})
    n = count(block_texts + heading_lines + [c + "\n\n" for c in contexts])
    block_tok = dict(zip(map(id, [b for _, _, bl in sections for b in bl]), (x - specials for x in n)))
    head_tok = dict(zip(heading_lines, (x - specials for x in n[len(block_texts):])))
    ctx_tok = dict(zip(contexts, (x - specials for x in n[len(block_texts) + len(heading_lines):])))

    def budget(path: tuple[str, ...]) -> int:
        return limit - specials - ctx_tok[context_line(doc.title, path)]

    chunks: list[Chunk] = []
    cur: _Open | None = None

    def flush() -> None:
        nonlocal cur
        if cur and cur.parts:
            content = _render(cur.parts)
            ctx = context_line(doc.title, cur.path)
            embed = f"{ctx}\n\n{content}" if ctx else content
            chunks.append(Chunk(ordinal=len(chunks), heading_path=" > ".join(cur.path), content=content,
                                embed_text=embed, tokens=0, content_hash=hashlib.sha256(embed.encode()).hexdigest(),
                                overlap=cur.overlap))
        cur = None

    def overlap_parts(prev: _Open, room: int) -> list[_Part]:
        """Whole trailing sentences of the previous chunk, up to overlap_tokens (and < half of it)."""
        cap = min(overlap_tokens, room, prev.tokens // 2)
        if cap <= 0:
            return []
        tail: list[tuple[str, str]] = []
        for p in reversed(prev.parts):
            if p.text.startswith("#"):
                break  # never carry a heading line
            sents = list(p.sentences or split_sentences(p.text))
            if sents:
                sents[0] = (p.sep, sents[0][1])
            tail = sents + tail
            if len(tail) >= 8:
                break
        if not tail:
            return []
        counts = count([s for _, s in tail])
        picked: list[tuple[str, str]] = []
        total = 0
        for (sep, s), c in zip(reversed(tail), reversed(counts)):
            c -= specials
            if total + c > cap:
                break
            picked.insert(0, (sep, s))
            total += c
        if not picked:
            return []
        picked[0] = ("", picked[0][1])
        return [_Part(_join(picked), total, "", picked)]

    def add(part: _Part, path: tuple[str, ...]) -> None:
        nonlocal cur
        b = budget(path)
        if cur is not None and cur.path == path and cur.tokens + part.tokens <= b:
            cur.parts.append(part)
            cur.tokens += part.tokens
            return
        prev = cur if (cur is not None and cur.path == path) else None
        flush()
        cur = _Open(path)
        if prev is not None:
            ov = overlap_parts(prev, b - part.tokens)
            if ov:
                cur.parts.extend(ov)
                cur.tokens += ov[0].tokens
                cur.overlap = ov[0].text
        part = _Part(part.text, part.tokens, "" if not cur.parts else part.sep, part.sentences)
        cur.parts.append(part)
        cur.tokens += part.tokens

    for path, heading_line, blocks in sections:
        b = budget(path)
        sec_tokens = sum(block_tok[id(x)] for x in blocks)
        if cur is not None and cur.path != path and (cur.tokens < min_tokens or sec_tokens < min_tokens):
            # a small section next to another: one chunk (heading kept inline) if it fits whole
            extra = head_tok[heading_line] + sec_tokens
            if cur.tokens + extra <= budget(cur.path):
                cur.parts.append(_Part(heading_line, head_tok[heading_line], "\n\n"))
                for x in blocks:
                    cur.parts.append(_Part(x.text, block_tok[id(x)], "\n\n"))
                cur.tokens += extra
                continue
        for x in blocks:
            t = block_tok[id(x)]
            if t <= b:
                add(_Part(x.text, t, "\n\n"), path)
                continue
            # an oversize block: split at sentence ends (code: at line ends)
            pieces = ([("\n" if i else "", ln) for i, ln in enumerate(x.text.split("\n"))] if x.kind == "code"
                      else split_sentences(x.text))
            counts = [c - specials for c in count([s for _, s in pieces])]
            first = True
            for (sep, s), c in zip(pieces, counts):
                psep = "\n\n" if first else (sep or " ")
                first = False
                if c <= b:
                    add(_Part(s, c, psep, [("", s)]), path)
                else:
                    for w in _hard_split(s, count, specials, b):
                        add(_Part(w, b, psep, [("", w)]), path)
                        psep = " "
    flush()
    return chunks


def _render(parts: list[_Part]) -> str:
    return (parts[0].text + "".join(p.sep + p.text for p in parts[1:])).strip()


def _hard_split(sentence: str, count: TokenCounter, specials: int, budget: int) -> list[str]:
    """Last resort for a single sentence longer than the whole budget: cut at word boundaries."""
    words = sentence.split()
    out, cur = [], []
    for w in words:
        trial = " ".join(cur + [w])
        if cur and count([trial])[0] - specials > budget:
            out.append(" ".join(cur))
            cur = [w]
        else:
            cur.append(w)
    if cur:
        out.append(" ".join(cur))
    return out


def word_count_counter(texts: list[str]) -> list[int]:
    """A tokenizer-free counter (words + 2 specials) for tools that must not load a model."""
    return [len(t.split()) + 2 for t in texts]


def document_hash(text: str, *, embed_model: str, max_tokens: int, overlap_tokens: int) -> str:
    """Changes when the file, the chunker or the embedder changes (any of them means re-embedding)."""
    h = hashlib.sha256()
    h.update(f"chunker={CHUNKER_VERSION};model={embed_model};max={max_tokens};overlap={overlap_tokens}\n".encode())
    h.update(text.encode())
    return h.hexdigest()
