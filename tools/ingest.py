"""Ingest Markdown, text and HTML files (or folders of them) into the retrieval corpus.

    report = await ingest_paths(["evals/corpus"], progress=lambda done, total, path, status: ...)

Per file: read, hash (file text + chunker settings + embedder name), skip if the stored hash is
the same (nothing is written), else chunk, embed the chunks whose text is new (a chunk whose text
is unchanged keeps its stored vector), and replace the document's chunks in one transaction.
Embedding is batched across files; the model runs in a worker thread.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from config import Settings, get_settings
from storage.connect import get_database
from storage.corpus import ChunkIn, CorpusStore, DocumentIn
from storage.db import Database
from tools.chunking import SUFFIXES, chunk_document, document_hash, kind_for, parse_document
from tools.embeddings import Embedder, get_embedder

log = logging.getLogger(__name__)
Progress = Callable[[int, int, str, str], None]  # (files done, files total, source path, status)
EMBED_FLUSH_CHUNKS = 64


@dataclass
class IngestReport:
    files: int = 0
    inserted: int = 0
    replaced: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks_written: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    embed_model: str = ""
    dim: int = 0
    max_tokens: int = 0

    def summary(self) -> str:
        s = (f"{self.files} files: {self.inserted} new, {self.replaced} changed, {self.unchanged} unchanged"
             f"{f', {self.removed} removed' if self.removed else ''}{f', {len(self.failed)} failed' if self.failed else ''}; "
             f"{self.chunks_written} chunks written ({self.chunks_embedded} embedded, {self.chunks_reused} reused) "
             f"with {self.embed_model}"
             f"{f' ({self.dim}-d, chunks <= {self.max_tokens} tokens)' if self.dim else ' (model not loaded: nothing to embed)'}"
             f" in {self.seconds:.1f}s")
        return s


def discover_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files with a supported suffix, folders walked recursively (hidden entries skipped), sorted."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise FileNotFoundError(f"no such file or folder: {p}")
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    f = Path(root) / name
                    if not name.startswith(".") and kind_for(f):
                        found.append(f)
        elif kind_for(p):
            found.append(p)
        else:
            raise ValueError(f"{p}: unsupported file type (supported: {', '.join(sorted(SUFFIXES))})")
    seen, out = set(), []
    for f in found:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


class NotText(ValueError):
    """A file with a text suffix whose bytes are not UTF-8 text (a binary, another encoding)."""


def read_text_file(path: Path) -> str:
    """The file as UTF-8 text, or NotText with why: checked before anything is embedded (a NUL byte
    used to fail the database COPY after the embedding work, with a traceback)."""
    data = path.read_bytes()
    nul = data.find(b"\x00")
    if nul >= 0:
        raise NotText(f"not a text file (NUL byte at offset {nul})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise NotText(f"not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); convert it to UTF-8") from None


def source_path_for(path: Path) -> str:
    """Relative to the working directory when inside it (portable citations), else absolute."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


@dataclass
class _Pending:
    path: Path
    source_path: str
    doc: DocumentIn
    reused: int


def _resolved_source(source_path: str) -> Path:
    p = Path(source_path)
    return (p if p.is_absolute() else Path.cwd() / p).resolve()


async def prune_missing(store: CorpusStore, folders: Iterable[Path], kept: set[str]) -> list[str]:
    """Delete stored documents that lie under one of `folders` but are not in `kept` (the files
    found there now): their file was deleted, renamed, or became hidden/unsupported."""
    roots = [f.resolve() for f in folders]
    removed = []
    for sp in await store.source_paths():
        if sp in kept:
            continue
        if any(_resolved_source(sp).is_relative_to(root) for root in roots) and await store.delete_document(sp):
            removed.append(sp)
    return removed


async def ingest_paths(paths: Iterable[str | os.PathLike], *, progress: Progress | None = None,
                       reembed: bool = False, prune: bool = False, db: Database | None = None,
                       embedder: Embedder | None = None, settings: Settings | None = None) -> IngestReport:
    """prune: also delete stored documents under the given folders whose file is gone."""
    t0 = time.perf_counter()
    settings = settings or get_settings()
    db = db or await get_database()
    embedder = embedder or get_embedder()
    store = CorpusStore(db)
    paths = list(paths)
    files = discover_files(paths)

    report = IngestReport(embed_model=embedder.name)
    overlap = settings.chunk_overlap_tokens
    # The document hash needs no model: the configured cap stands for the chunk size ("model" =
    # the model's own max, a property of the model name), so an unchanged corpus is checked
    # without loading torch at all.
    cap_label = settings.chunk_max_tokens or 0

    others = [m for m in await store.models() if m.embed_model != embedder.name]
    if others and not reembed:
        await store.check_compatible(embedder.name, await embedder.dimension(), purpose="ingest")

    sources = [source_path_for(f) for f in files]
    if prune:
        for sp in await prune_missing(store, [Path(p) for p in paths if Path(p).is_dir()], set(sources)):
            log.info("removed %s from the corpus: its file is gone", sp)
            report.removed += 1
    texts: dict[str, str] = {}
    hashes: dict[str, str] = {}
    stored = await store.document_hashes(sources)
    unreadable: dict[str, str] = {}
    for path, sp in zip(files, sources):
        try:
            texts[sp] = read_text_file(path)
            hashes[sp] = document_hash(texts[sp], embed_model=embedder.name, max_tokens=cap_label,
                                       overlap_tokens=overlap)
        except NotText as e:
            unreadable[sp] = str(e)
        except OSError as e:
            unreadable[sp] = f"{type(e).__name__}: {e}"
    work_needed = reembed or any(stored.get(sp) != h for sp, h in hashes.items())

    dim = max_tokens = 0
    count = None
    if work_needed:
        dim = await embedder.dimension()
        model_max = await embedder.max_tokens()
        max_tokens = min(settings.chunk_max_tokens or model_max, model_max)
        count = await embedder.token_counter()
        report.dim, report.max_tokens = dim, max_tokens
        if not reembed:
            await store.check_compatible(embedder.name, dim, purpose="ingest")
        else:
            # Documents embedded with another model: re-ingest those whose file is still there,
            # drop the others (a corpus must be one vector space).
            known = set(sources)
            for sp in await store.documents_with_other_vectors(embedder.name, dim):
                if sp in known:
                    continue
                if Path(sp).exists() and kind_for(Path(sp)):
                    files.append(Path(sp))
                    sources.append(sp)
                    known.add(sp)
                    try:
                        texts[sp] = read_text_file(Path(sp))
                    except (NotText, OSError) as e:
                        unreadable[sp] = str(e)
                        continue
                    hashes[sp] = document_hash(texts[sp], embed_model=embedder.name, max_tokens=cap_label,
                                               overlap_tokens=overlap)
                else:
                    await store.delete_document(sp)
                    report.removed += 1
            stored.update(await store.document_hashes(sources))
        await store.ensure_vector_index(dim)

    report.files = len(files)
    total = len(files)
    done = 0
    pending: list[_Pending] = []

    def tick(path: str, status: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total, path, status)

    async def flush() -> None:
        todo = [(p, c) for p in pending for c in p.doc.chunks if c.embedding is None]
        if todo:
            vecs = await embedder.embed([c.embed_text for _, c in todo])  # type: ignore[attr-defined]
            for (_, c), v in zip(todo, vecs):
                c.embedding = np.asarray(v, dtype=np.float32)
            report.chunks_embedded += len(todo)
        try:  # one transaction for the batch: round trips do not grow with the number of files
            statuses = await store.upsert_documents([p.doc for p in pending], embed_model=embedder.name, dim=dim)
        except Exception:  # noqa: BLE001 - isolate the failing document: one transaction per file
            log.warning("batch write failed; writing the %d documents one by one", len(pending))
            statuses = []
            for p in pending:
                try:
                    statuses.append(await store.upsert_document(p.doc, embed_model=embedder.name, dim=dim))
                except Exception as e:  # one bad document must not stop the others
                    log.exception("writing %s failed", p.source_path)
                    report.failed.append((p.source_path, f"{type(e).__name__}: {e}"))
                    statuses.append("failed")
        for p, status in zip(pending, statuses):
            if status == "unchanged":
                report.unchanged += 1
            elif status in ("inserted", "replaced"):
                setattr(report, status, getattr(report, status) + 1)
                report.chunks_written += len(p.doc.chunks)
                report.chunks_reused += p.reused
            tick(p.source_path, status)
        pending.clear()

    for path, sp in zip(files, sources):
        if sp in unreadable:
            report.failed.append((sp, unreadable[sp]))
            tick(sp, "failed")
            continue
        h = hashes[sp]
        if stored.get(sp) == h:
            report.unchanged += 1
            tick(sp, "unchanged")
            continue
        try:
            parsed = parse_document(texts[sp], kind_for(path) or "text", fallback_title=path.stem.replace("-", " "))
            chunks = chunk_document(parsed, count, max_tokens=max_tokens, overlap_tokens=overlap)
            reuse = await store.reusable_vectors(sp, embedder.name, dim) if sp in stored else {}
            items = []
            reused = 0
            for c in chunks:
                ci = _ChunkWork(c.ordinal, c.heading_path, c.content, c.content_hash, reuse.get(c.content_hash))
                ci.embed_text = c.embed_text
                reused += ci.embedding is not None
                items.append(ci)
            meta = {k: v for k, v in parsed.metadata.items() if k != "title"}
            meta["kind"] = kind_for(path)
            pending.append(_Pending(path, sp, DocumentIn(sp, parsed.title or path.stem, h, items, meta), reused))
        except Exception as e:
            log.exception("chunking %s failed", sp)
            report.failed.append((sp, f"{type(e).__name__}: {e}"))
            tick(sp, "failed")
            continue
        if sum(1 for p in pending for c in p.doc.chunks if c.embedding is None) >= EMBED_FLUSH_CHUNKS:
            await flush()
    await flush()
    report.seconds = time.perf_counter() - t0
    return report


@dataclass
class _ChunkWork(ChunkIn):
    embed_text: str = ""


async def ingest_text(source_path: str, text: str, *, kind: str, title: str, metadata: dict | None = None,
                      db: Database | None = None, embedder: Embedder | None = None,
                      settings: Settings | None = None) -> tuple[str, int]:
    """Chunk, embed and store one document given as text (a fetched web page), under `source_path`.

    Returns (status, chunks): 'inserted' | 'replaced' | 'unchanged'. The same hashing as files, so
    fetching an unchanged page again writes nothing."""
    settings = settings or get_settings()
    db = db or await get_database()
    embedder = embedder or get_embedder()
    store = CorpusStore(db)
    dim = await embedder.dimension()
    await store.check_compatible(embedder.name, dim, purpose="ingest")
    model_max = await embedder.max_tokens()
    max_tokens = min(settings.chunk_max_tokens or model_max, model_max)
    h = document_hash(text, embed_model=embedder.name, max_tokens=settings.chunk_max_tokens or 0,
                      overlap_tokens=settings.chunk_overlap_tokens)
    if (await store.document_hashes([source_path])).get(source_path) == h:
        return "unchanged", 0
    parsed = parse_document(text, kind, fallback_title=title)
    if title:
        parsed.title = title
    chunks = chunk_document(parsed, await embedder.token_counter(), max_tokens=max_tokens,
                            overlap_tokens=settings.chunk_overlap_tokens)
    if not chunks:
        raise ValueError("no text to index")
    vecs = await embedder.embed([c.embed_text for c in chunks])
    items = [ChunkIn(c.ordinal, c.heading_path, c.content, c.content_hash, np.asarray(v, dtype=np.float32))
             for c, v in zip(chunks, vecs)]
    await store.ensure_vector_index(dim)
    meta = {**(metadata or {}), "kind": kind}
    status = await store.upsert_document(DocumentIn(source_path, parsed.title or title or source_path, h, items, meta),
                                         embed_model=embedder.name, dim=dim)
    return status, len(items)
