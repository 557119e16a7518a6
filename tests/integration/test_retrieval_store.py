"""Corpus storage and retrieval on the embedded PostgreSQL + pgvector, with the real embedder:
re-ingest writes nothing, a changed file is replaced atomically, filters run inside the SQL,
a dimension mismatch is a clear error, the researcher's citations point at real chunks."""
from __future__ import annotations

import numpy as np
import pytest

from storage.corpus import ChunkIn, CorpusStore, DocumentIn, EmbeddingMismatchError
from tests.retrieval_helpers import unit, write_notes
from tools.ingest import ingest_paths
from tools.retrieval import Retriever

NOTES = {
    "gqa.md": "---\ntags: [attention, memory]\n---\n# Grouped-query attention\n\nLlama 3.1 8B has 32 query heads "
              "and 8 key/value heads, so four query heads share each KV head and the KV cache is 4x smaller. "
              "Multi-query attention goes further with a single KV head for all query heads, at some cost in "
              "quality, while multi-head attention keeps one KV head per query head. GQA was shown to recover "
              "almost all of the quality of multi-head attention with a fraction of its memory traffic.\n\n"
              "## Arithmetic\n\nPer token the cache holds 2 x 32 layers x 8 heads x 128 dims x 2 bytes = 128 KiB. "
              "At 8K tokens of context that is about 1.07 GB for one sequence, and at 128K tokens it is 17.2 GB. "
              "Batch size multiplies it again: ten sequences at 128K need 171.8 GB of cache.\n",
    "breaker.md": "---\ntags: [reliability]\n---\n# Circuit breakers\n\nA circuit breaker opens after three consecutive "
                  "failures, fails fast during a cooldown, then lets one half-open probe through.\n",
    "dpo.md": "---\ntags: [alignment]\n---\n# DPO\n\nDPO trains on preference pairs with a classification loss and "
              "needs no reward model, no sampling loop and only two models in memory.\n",
}


async def _row_versions(db, source_prefix: str) -> list[tuple]:
    rows = await db.fetch(
        "SELECT d.source_path, d.xmin::text AS dx, d.ingested_at, c.id::text AS cid, c.xmin::text AS cx "
        "FROM documents d JOIN chunks c ON c.document_id = d.id WHERE d.source_path LIKE %(p)s "
        "ORDER BY d.source_path, c.ordinal", {"p": source_prefix + "%"})
    return [tuple(r.values()) for r in rows]


async def test_reingest_unchanged_writes_nothing_and_changed_file_is_replaced(private_db, embedder, tmp_path):  # noqa: F811
    db = private_db
    write_notes(tmp_path / "notes", NOTES)
    first = await ingest_paths([tmp_path / "notes"], db=db, embedder=embedder)
    assert (first.inserted, first.unchanged, first.failed) == (3, 0, [])
    assert first.chunks_written == first.chunks_embedded >= 3
    prefix = str((tmp_path / "notes").resolve())
    before = await _row_versions(db, prefix)
    calls = embedder.calls

    seen = []
    again = await ingest_paths([tmp_path / "notes"], db=db, embedder=embedder,
                               progress=lambda d, t, p, s: seen.append((d, t, s)))
    assert (again.inserted, again.replaced, again.unchanged, again.chunks_written) == (0, 0, 3, 0)
    assert seen == [(1, 3, "unchanged"), (2, 3, "unchanged"), (3, 3, "unchanged")]
    assert embedder.calls == calls, "nothing is embedded for unchanged files"
    assert await _row_versions(db, prefix) == before, "no row was inserted, updated or deleted"

    # Change one paragraph of one file: its document is replaced, the unchanged chunk keeps its vector.
    (tmp_path / "notes" / "gqa.md").write_text(NOTES["gqa.md"].replace("128 KiB", "131,072 bytes"))
    changed = await ingest_paths([tmp_path / "notes"], db=db, embedder=embedder)
    assert (changed.replaced, changed.unchanged) == (1, 2)
    assert changed.chunks_embedded == 1 and changed.chunks_reused >= 1
    after = await _row_versions(db, prefix)
    gqa_before = {r[3] for r in before if r[0].endswith("gqa.md")}
    gqa_after = {r[3] for r in after if r[0].endswith("gqa.md")}
    assert gqa_before.isdisjoint(gqa_after), "the old chunks were replaced"
    assert [r for r in after if not r[0].endswith("gqa.md")] == [r for r in before if not r[0].endswith("gqa.md")]
    rows = await db.fetch("SELECT content FROM chunks c JOIN documents d ON d.id = c.document_id "
                          "WHERE d.source_path LIKE %(p)s", {"p": "%gqa.md"})
    assert any("131,072 bytes" in r["content"] for r in rows) and not any("128 KiB" in r["content"] for r in rows)


async def test_prune_removes_documents_whose_file_is_gone_and_only_under_the_folder(private_db, embedder, tmp_path):  # noqa: F811
    db, store = private_db, CorpusStore(private_db)
    write_notes(tmp_path / "notes", NOTES)
    write_notes(tmp_path / "other", {"keep.md": NOTES["dpo.md"]})
    await ingest_paths([tmp_path / "notes", tmp_path / "other"], db=db, embedder=embedder)
    (tmp_path / "notes" / "dpo.md").unlink()
    (tmp_path / "notes" / "breaker.md").rename(tmp_path / "notes" / ".breaker.md")  # hidden: no longer ingested
    mine = lambda paths: sorted(p.rsplit("/", 2)[-2] + "/" + p.rsplit("/", 1)[-1]  # noqa: E731
                                for p in paths if str(tmp_path.resolve()) in p)

    kept = await ingest_paths([tmp_path / "notes"], db=db, embedder=embedder)  # without --prune: nothing removed
    assert kept.removed == 0 and len(mine(await store.source_paths())) == 4

    pruned = await ingest_paths([tmp_path / "notes"], db=db, embedder=embedder, prune=True)
    assert (pruned.removed, pruned.unchanged) == (2, 1)
    assert mine(await store.source_paths()) == ["notes/gqa.md", "other/keep.md"]  # the other folder is untouched
    assert "2 removed" in pruned.summary()
    rows = await db.fetch("SELECT count(*) AS n FROM chunks c JOIN documents d ON d.id = c.document_id "
                          "WHERE d.source_path LIKE %(p)s", {"p": "%dpo.md"})
    assert rows[0]["n"] == 0  # its chunks went with it


async def test_files_that_are_not_utf8_text_are_refused_before_any_embedding(private_db, embedder, tmp_path):  # noqa: F811
    """A binary with a .md suffix used to be embedded, then fail the COPY on its NUL bytes with a
    traceback; a Latin-1 file was stored with replacement characters. Both now fail with the reason
    before the embedder sees them; the good file next to them is ingested."""
    folder = tmp_path / "mixed"
    write_notes(folder, {"gqa.md": NOTES["gqa.md"]})
    (folder / "blob.md").write_bytes(b"# Looks like markdown\n\x00\x01\x02binary")
    (folder / "latin.txt").write_bytes("Caf\u00e9 notes".encode("latin-1"))
    report = await ingest_paths([folder], db=private_db, embedder=embedder)
    assert report.inserted == 1
    reasons = {path.rsplit("/", 1)[-1]: why for path, why in report.failed}
    assert reasons == {"blob.md": "not a text file (NUL byte at offset 22)",
                       "latin.txt": "not UTF-8 text (byte 0xe9 at offset 3); convert it to UTF-8"}
    stored = [p.rsplit("/", 1)[-1] for p in await CorpusStore(private_db).source_paths() if str(folder.resolve()) in p]
    assert stored == ["gqa.md"]


async def test_a_failed_replacement_leaves_the_old_chunks(private_db):  # noqa: F811
    store = CorpusStore(private_db)
    v = unit(np.ones(384))
    ok = DocumentIn("mem://doc", "Doc", "h1", [ChunkIn(0, "", "old text", "c1", v)])
    assert await store.upsert_document(ok, embed_model="m", dim=384) == "inserted"
    # PostgreSQL text cannot hold NUL: the COPY of the second chunk fails inside the transaction.
    bad = DocumentIn("mem://doc", "Doc v2", "h2", [ChunkIn(0, "", "new text", "c2", v),
                                                  ChunkIn(1, "", "broken \x00 text", "c3", v)])
    with pytest.raises(Exception):
        await store.upsert_document(bad, embed_model="m", dim=384)
    rows = await private_db.fetch("SELECT d.title, d.content_hash, c.content FROM documents d "
                                  "JOIN chunks c ON c.document_id = d.id WHERE d.source_path = 'mem://doc'")
    assert [(r["title"], r["content_hash"], r["content"]) for r in rows] == [("Doc", "h1", "old text")]


async def test_filters_are_applied_inside_the_sql(private_db):  # noqa: F811
    """300 'noise' chunks sit right next to the query; 5 tagged 'needle' chunks are far away. A
    post-filter over the top candidates would find no needle; the SQL filter returns k of them."""
    store = CorpusStore(private_db)
    rng = np.random.default_rng(7)
    q = unit(rng.normal(size=384))
    docs = [DocumentIn(f"mem://noise/{i}", f"noise {i}", f"n{i}",
                       [ChunkIn(0, "", f"noise {i}", f"nc{i}", unit(q + 0.3 * unit(rng.normal(size=384))))],
                       {"tags": ["noise"]}) for i in range(300)]
    docs += [DocumentIn(f"mem://needle/{i}", f"needle {i}", f"x{i}",
                        [ChunkIn(0, "", f"needle {i}", f"xc{i}", unit(rng.normal(size=384)))],
                        {"tags": ["needle", "rare"], "lang": "en"}) for i in range(5)]
    assert set(await store.upsert_documents(docs, embed_model="synthetic", dim=384)) == {"inserted"}
    unfiltered = await store.vector_search(q, embed_model="synthetic", dim=384, limit=40)
    assert len(unfiltered) == 40 and not any(r["title"].startswith("needle") for r in unfiltered)

    for filters in ({"tags": ["needle"]}, {"tags": "rare", "lang": "en"}, {"source_prefix": "mem://needle/"},
                    {"source_path": ["mem://needle/1", "mem://needle/3", "mem://needle/4"]}):
        got = await store.vector_search(q, embed_model="synthetic", dim=384, limit=3, filters=filters)
        assert len(got) == 3 and all(r["title"].startswith("needle") for r in got), filters
        assert [r["score"] for r in got] == sorted((r["score"] for r in got), reverse=True)

    plan = await store.explain_vector_search(q, embed_model="synthetic", dim=384, limit=3,
                                             filters={"tags": ["needle"]})
    inner = plan.split("CTE hits", 1)[1].split("CTE Scan", 1)[0]
    assert "metadata @>" in inner and "Limit" in inner, plan  # the predicate runs below the LIMIT
    assert plan.index("Limit") < plan.index("metadata @>")


async def test_has_chunks_outside_a_prefix_agrees_with_the_count(private_db):  # noqa: F811
    """The researcher's "is there a corpus" question (EXISTS) answers what the count did, and
    the prefix's LIKE metacharacters are literal (web_ must not match webX)."""
    store = CorpusStore(private_db)
    assert await store.has_chunks(outside_prefix="web_/") is False
    page = DocumentIn("web_/a", "page", "p1", [ChunkIn(0, "", "page", "pc1", unit(np.ones(384)))])
    await store.upsert_documents([page], embed_model="synthetic", dim=384)
    assert await store.has_chunks(outside_prefix="web_/") is False
    assert await store.count_chunks(outside_prefix="web_/") == 0
    other = DocumentIn("webX/b", "note", "n1", [ChunkIn(0, "", "note", "nc1", unit(-np.ones(384)))])
    await store.upsert_documents([other], embed_model="synthetic", dim=384)
    assert await store.has_chunks(outside_prefix="web_/") is True
    assert await store.count_chunks(outside_prefix="web_/") == 1


async def test_filtered_search_through_the_hnsw_index(private_db):  # noqa: F811
    """With the planner pushed onto the HNSW index, the iterative scan still returns k filtered rows."""
    store = CorpusStore(private_db)
    rng = np.random.default_rng(11)
    q = unit(rng.normal(size=384))
    docs = []
    for i in range(400):
        tag = "needle" if i % 100 == 0 else "noise"
        v = unit((q if tag == "noise" else -q) + 0.5 * unit(rng.normal(size=384)))
        docs.append(DocumentIn(f"mem://h/{i}", f"{tag} {i}", f"h{i}", [ChunkIn(0, "", tag, f"hc{i}", v)], {"tags": [tag]}))
    await store.upsert_documents(docs, embed_model="synthetic", dim=384)
    async with private_db.pool.connection() as conn:
        await conn.execute("ANALYZE chunks")
    from storage import corpus_sql

    query, params = corpus_sql.vector_search("postgres", 384, {"tags": ["needle"]}, limit=4)
    params.update({"q": "[" + ",".join(map(str, q.tolist())) + "]", "model": "synthetic"})

    async def _run(conn):
        await conn.execute("SET LOCAL enable_seqscan = off")
        await conn.execute("SET LOCAL enable_bitmapscan = off")
        await conn.execute("SET LOCAL enable_sort = off")  # only the HNSW index yields distance order
        await conn.execute(corpus_sql.PG_SEARCH_SETTINGS, {"ef_search": "10"})
        plan = await (await conn.execute("EXPLAIN " + query, params)).fetchall()
        rows = await (await conn.execute(query, params)).fetchall()
        return "\n".join(next(iter(r.values())) for r in plan), rows

    plan, rows = await private_db.transaction(_run)
    assert "chunks_embedding_384_hnsw" in plan, plan
    assert len(rows) == 4 and all(r["title"].startswith("needle") for r in rows)


async def test_dimension_mismatch_is_a_clear_error(private_db, embedder, tmp_path):  # noqa: F811
    from tools.embeddings import SentenceTransformerEmbedder

    write_notes(tmp_path / "n", NOTES)
    await ingest_paths([tmp_path / "n"], db=private_db, embedder=embedder)
    # A real second embedder: the same MiniLM weights truncated to 256 dimensions (another vector space).
    small = SentenceTransformerEmbedder(truncate_dim=256, model=embedder.load())
    assert await small.dimension() == 256 and small.name != embedder.name

    with pytest.raises(EmbeddingMismatchError) as e:
        await Retriever(db=private_db, embedder=small).retrieve("KV cache per token", hyde=False)
    msg = str(e.value)
    assert "384-d" in msg and "256-d" in msg and embedder.name in msg and "re-ingest" in msg
    with pytest.raises(EmbeddingMismatchError, match="--reembed"):
        await ingest_paths([tmp_path / "n"], db=private_db, embedder=small)

    # --reembed moves the whole corpus to the new space (a 256-d HNSW index is created for it).
    report = await ingest_paths([tmp_path / "n"], db=private_db, embedder=small, reembed=True)
    assert report.replaced == 3 and report.dim == 256
    got = await Retriever(db=private_db, embedder=small).retrieve("KV cache per token", hyde=False, k=1)
    assert got and got[0].source_path.endswith("gqa.md")
    idx = await private_db.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'chunks'")
    assert "chunks_embedding_256_hnsw" in {r["indexname"] for r in idx}
    with pytest.raises(EmbeddingMismatchError):
        await Retriever(db=private_db, embedder=embedder).retrieve("KV cache per token", hyde=False)
    # A query vector of the wrong size never reaches SQL as garbage either.
    with pytest.raises(EmbeddingMismatchError):
        await CorpusStore(private_db).vector_search(np.ones(384), embed_model=small.name, dim=256, limit=3)


async def test_retrieve_dedups_per_source_and_hybrid_fuses(module_db, embedder, tmp_path):  # noqa: F811
    long_gqa = NOTES["gqa.md"] + "\n".join(f"\n## Part {i}\n\n" + " ".join(
        f"GQA detail {i}.{j}: grouped KV heads cut cache memory for long contexts." for j in range(12))
        for i in range(4))
    write_notes(tmp_path / "d", {**NOTES, "gqa.md": long_gqa})
    await ingest_paths([tmp_path / "d"], db=module_db, embedder=embedder)
    r = Retriever(db=module_db, embedder=embedder)
    got = await r.retrieve("grouped-query attention KV heads", k=3, hyde=False)
    assert len({c.document_id for c in got}) == len(got) == 3, "one chunk per source"
    assert got[0].source_path.endswith("gqa.md") and got[0].title == "Grouped-query attention"
    hybrid = await r.retrieve("consecutive failures cooldown", k=2, hyde=False, hybrid=True)
    assert hybrid[0].source_path.endswith("breaker.md") and r.last.text_hits >= 1
    filtered = await r.retrieve("grouped-query attention", k=3, hyde=False, filters={"tags": ["alignment"]})
    assert [c.source_path.rsplit("/", 1)[1] for c in filtered] == ["dpo.md"]


async def test_researcher_citations_point_at_real_chunks(module_db, embedder, tmp_path, monkeypatch):  # noqa: F811
    """The engine's researcher desk, through the retrieval seam, cites chunk ids that exist."""
    from agents import researcher
    from agents.models import ResearchPlan, RetrievalResult
    from tools import retrieval

    write_notes(tmp_path / "r", NOTES)
    await ingest_paths([tmp_path / "r"], db=module_db, embedder=embedder)

    async def hyde(query, thread_id):
        return "Grouped-query attention shares key/value heads between query heads to shrink the KV cache."

    monkeypatch.setattr(retrieval, "_default", Retriever(db=module_db, embedder=embedder, hyde_generate=hyde))
    # What the desk's retrieve and gather steps do: the topic (and its plan's sub-questions) searched,
    # notes above the floor numbered with their excerpts.
    plan = ResearchPlan(topic="How GQA shrinks the KV cache")
    found = await retrieval.get_retriever().search_many(researcher.search_queries(plan), k=3)
    result = RetrievalResult.model_validate(found.model_dump())
    notes = researcher.notes_from_sources(researcher.select_sources(result, [], top_k=3))
    assert notes.grounded and notes.citations
    ids = [c.chunk_id for c in notes.citations]
    stored = await CorpusStore(module_db).chunks_by_id(ids)
    assert {r["chunk_id"] for r in stored} == set(ids)
    by_id = {r["chunk_id"]: r for r in stored}
    for c in notes.citations:
        assert by_id[c.chunk_id]["source_path"] == c.source_path and f"[{c.n}]" in notes.notes
        assert c.excerpt and by_id[c.chunk_id]["content"].strip().startswith(c.excerpt)  # what a claim is checked against
    assert notes.citations[0].source_path.endswith("gqa.md")
