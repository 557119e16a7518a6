"""SQL of the retrieval corpus (documents + chunks). Used only by storage/corpus.py.

Vector SQL depends on the dialect and on the embedding dimension: on PostgreSQL the column is an
untyped `vector` and the HNSW index is a partial expression index per dimension, so a query
must say `(embedding::vector(384)) <=> ...` and `dim = 384` for the planner to use it; the
dimension is a type modifier, not a bind parameter, hence the builders below (validated ints).
Metadata filters are compiled into the WHERE clause (never applied after the LIMIT).
"""
from __future__ import annotations

import functools
from typing import Any

from psycopg import sql

# --- documents -----------------------------------------------------------------------------------

SELECT_DOCUMENT_HASHES = """
SELECT source_path, content_hash, id::text AS id FROM documents WHERE source_path = ANY(%(paths)s)
"""

# Insert, or replace when the hash differs; nothing (no row back, no write) when it is the same.
# The returned id equals the proposed one for a new document (works on both dialects).
UPSERT_DOCUMENT_IF_CHANGED = """
INSERT INTO documents (id, source_path, title, content_hash, metadata)
VALUES (%(id)s, %(source_path)s, %(title)s, %(content_hash)s, %(metadata)s::JSONB)
ON CONFLICT (source_path) DO UPDATE
   SET title = EXCLUDED.title, content_hash = EXCLUDED.content_hash,
       metadata = EXCLUDED.metadata, ingested_at = now()
 WHERE documents.content_hash <> EXCLUDED.content_hash
RETURNING id::text AS id
"""

# Writers of different documents touch disjoint rows, and two writers of one document are
# serialised by the row lock of the upsert; SERIALIZABLE would only add false conflicts (SSI's
# page-level predicate locks on the documents indexes). CockroachDB runs it as SERIALIZABLE
# unless READ COMMITTED is enabled on the cluster, which is also correct.
WRITE_ISOLATION = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED"

DELETE_CHUNKS_OF_DOCUMENTS = "DELETE FROM chunks WHERE document_id = ANY(%(ids)s::UUID[])"

DELETE_DOCUMENT = "DELETE FROM documents WHERE source_path = %(source_path)s"

COUNT_DOCUMENTS = "SELECT count(*) AS n FROM documents"

SELECT_SOURCE_PATHS = "SELECT source_path FROM documents ORDER BY source_path"

LIST_DOCUMENTS = """
SELECT d.id::text AS id, d.source_path, d.title, d.content_hash, d.metadata, d.ingested_at,
       (SELECT count(*) FROM chunks c WHERE c.document_id = d.id) AS chunks
FROM documents d ORDER BY d.source_path
"""

# --- chunks ----------------------------------------------------------------------------------------

SELECT_CHUNK_VECTORS_OF_DOCUMENT = """
SELECT content_hash, embedding::text AS embedding FROM chunks
WHERE document_id = %(document_id)s AND embed_model = %(embed_model)s AND dim = %(dim)s
"""

CHUNK_COLUMNS = ("document_id", "ordinal", "heading_path", "content", "content_hash", "embed_model", "dim",
                 "embedding")
CHUNK_COPY_TYPES = ["uuid", "int4", "text", "text", "text", "text", "int4"]  # + the vector type's oid

COPY_CHUNKS = sql.SQL("COPY chunks ({}) FROM STDIN (FORMAT BINARY)").format(
    sql.SQL(", ").join(map(sql.Identifier, CHUNK_COLUMNS)))


def insert_chunks(n_rows: int) -> sql.Composed:
    """A multi-row INSERT for n_rows chunks (CockroachDB path; PostgreSQL uses COPY)."""
    row = sql.SQL("(%s, %s, %s, %s, %s, %s, %s, %s::VECTOR)")
    return sql.SQL("INSERT INTO chunks ({}) VALUES {}").format(
        sql.SQL(", ").join(map(sql.Identifier, CHUNK_COLUMNS)), sql.SQL(", ").join([row] * n_rows))


COUNT_CHUNKS = "SELECT count(*) AS n FROM chunks"

# Chunks outside a source-path prefix (the corpus without the pages fetched for single posts).
COUNT_CHUNKS_OUTSIDE = """
SELECT count(*) AS n FROM chunks c JOIN documents d ON d.id = c.document_id
WHERE d.source_path NOT LIKE %(prefix)s ESCAPE '\\'
"""

# Whether any chunk lies outside the prefix: the researcher asks before every plan and retrieval.
# EXISTS stops at the first row; the count above read every chunk (47.8 ms at 100k chunks against
# 0.02 ms, EXPLAIN ANALYZE, twice per post).
ANY_CHUNK_OUTSIDE = """
SELECT EXISTS (SELECT 1 FROM chunks c JOIN documents d ON d.id = c.document_id
               WHERE d.source_path NOT LIKE %(prefix)s ESCAPE '\\') AS found
"""

CORPUS_MODELS = """
SELECT embed_model, dim, count(*) AS chunks, count(DISTINCT document_id) AS documents
FROM chunks GROUP BY embed_model, dim ORDER BY chunks DESC
"""

SELECT_CHUNKS_BY_ID = """
SELECT c.id::text AS chunk_id, c.document_id::text AS document_id, d.source_path, d.title,
       c.heading_path, c.content, c.ordinal
FROM chunks c JOIN documents d ON d.id = c.document_id
WHERE c.id = ANY(%(ids)s::UUID[])
"""

DOCUMENTS_WITH_OTHER_VECTORS = """
SELECT DISTINCT d.source_path FROM documents d JOIN chunks c ON c.document_id = d.id
WHERE NOT (c.embed_model = %(embed_model)s AND c.dim = %(dim)s)
"""

# pgvector search knobs, transaction-local. Loading the type first makes sure the extension's
# library (which defines the hnsw.* settings) is loaded in this backend before set_config.
PG_SEARCH_SETTINGS = """
SELECT set_config('hnsw.ef_search', %(ef_search)s, true) AS ef,
       set_config('hnsw.iterative_scan', 'relaxed_order', true) AS iter
FROM (SELECT '[0]'::vector AS v) AS load_pgvector
"""


# --- search builders ----------------------------------------------------------------------------------

def _dim(dim: int) -> int:
    if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= 16000:
        raise ValueError(f"invalid vector dimension {dim!r}")
    return dim


def hnsw_index_name(dim: int) -> str:
    return f"chunks_embedding_{_dim(dim)}_hnsw"


def create_hnsw_index(dim: int) -> sql.Composed:
    d = _dim(dim)
    return sql.SQL(
        "CREATE INDEX IF NOT EXISTS {name} ON chunks USING hnsw ((embedding::vector({d})) vector_cosine_ops) "
        "WITH (m = 16, ef_construction = 64) WHERE dim = {d}"
    ).format(name=sql.Identifier(hnsw_index_name(d)), d=sql.Literal(d))


def _distance(dialect: str, dim: int) -> sql.Composable:
    d = _dim(dim)
    if dialect == "cockroachdb":
        return sql.SQL("c.embedding <=> %(q)s::VECTOR({d})").format(d=sql.Literal(d))
    return sql.SQL("(c.embedding::vector({d})) <=> %(q)s::vector({d})").format(d=sql.Literal(d))


def compile_filters(filters: dict[str, Any] | None) -> tuple[sql.Composable, dict[str, Any]]:
    """WHERE fragments (each prefixed by AND) and their parameters.

    Keys: source_path (str | list: exact), source_prefix (str), exclude_source_prefix (str),
    document_id (str | list),
    title (str), heading (substring of the heading path, case-insensitive), tags (str | list:
    the document has all of them), metadata (dict: JSONB containment). Any other key is a
    metadata field that must equal the value (JSONB containment of {key: value}).
    """
    import json

    parts: list[sql.Composable] = []
    params: dict[str, Any] = {}
    contains: dict[str, Any] = {}
    for i, (key, value) in enumerate(sorted((filters or {}).items())):
        p = f"f{i}"
        if value is None:
            continue
        if key == "source_path":
            parts.append(sql.SQL("d.source_path = ANY({})").format(sql.Placeholder(p)))
            params[p] = [value] if isinstance(value, str) else list(value)
        elif key == "source_prefix":
            esc = str(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            parts.append(sql.SQL("d.source_path LIKE {} ESCAPE '\\'").format(sql.Placeholder(p)))
            params[p] = esc + "%"
        elif key == "exclude_source_prefix":
            esc = str(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            parts.append(sql.SQL("d.source_path NOT LIKE {} ESCAPE '\\'").format(sql.Placeholder(p)))
            params[p] = esc + "%"
        elif key == "document_id":
            parts.append(sql.SQL("c.document_id = ANY({}::UUID[])").format(sql.Placeholder(p)))
            params[p] = [value] if isinstance(value, str) else [str(v) for v in value]
        elif key == "title":
            parts.append(sql.SQL("d.title = {}").format(sql.Placeholder(p)))
            params[p] = str(value)
        elif key == "heading":
            esc = str(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            parts.append(sql.SQL("c.heading_path ILIKE {} ESCAPE '\\'").format(sql.Placeholder(p)))
            params[p] = f"%{esc}%"
        elif key == "tags":
            contains.setdefault("tags", [])
            contains["tags"] += [value] if isinstance(value, str) else list(value)
        elif key == "metadata":
            if not isinstance(value, dict):
                raise ValueError("filter 'metadata' must be a dict")
            contains.update(value)
        else:
            contains[key] = value
    if contains:
        parts.append(sql.SQL("d.metadata @> {}::JSONB").format(sql.Placeholder("fmeta")))
        params["fmeta"] = json.dumps(contains)
    clause = sql.SQL("").join(sql.SQL(" AND ") + part for part in parts)
    return clause, params


def _limit(limit: int) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10000:
        raise ValueError(f"invalid search limit {limit!r}")
    return limit


def vector_search(dialect: str, dim: int, filters: dict[str, Any] | None, *, limit: int) -> tuple[str, dict]:
    """Top-`limit` chunks by cosine distance to %(q)s, with the filters inside the scan.

    The inner query is what the HNSW index serves (ORDER BY distance LIMIT n over chunks, the
    filters evaluated during the iterative index scan, the document's columns joined per hit);
    the outer query only re-sorts exactly (the iterative scan's order is relaxed).
    The limit is a literal, not a parameter: with `LIMIT $n` the generic plan of the prepared
    statement (psycopg prepares a query after 5 runs on a connection) was costed for 10% of the
    table, so PostgreSQL re-planned every call (a custom plan: ~0.35 ms of the ~1.9 ms a 100k
    search took in the server); with the literal the generic plan is as cheap and is kept.
    """
    where, params = compile_filters(filters)
    return _vector_search_sql(dialect, _dim(dim), _limit(limit), where.as_string(None)), params


@functools.lru_cache(maxsize=256)
def _vector_search_sql(dialect: str, dim: int, limit: int, where: str) -> str:
    # Cached: composing this statement cost ~30 us a call.
    return sql.SQL("""
WITH hits AS MATERIALIZED (
    SELECT c.id, c.document_id, d.source_path, d.title, c.heading_path, c.content, c.ordinal,
           {distance} AS distance
    FROM chunks c JOIN documents d ON d.id = c.document_id
    WHERE c.dim = {dim} AND c.embed_model = %(model)s{where}
    ORDER BY distance
    LIMIT {limit}
)
SELECT id::text AS chunk_id, document_id::text AS document_id, source_path, title, heading_path, content,
       ordinal, 1 - distance AS score
FROM hits
ORDER BY distance, id
""").format(distance=_distance(dialect, dim), dim=sql.Literal(dim), where=sql.SQL(where),
            limit=sql.Literal(limit)).as_string(None)


def text_search(dialect: str, filters: dict[str, Any] | None, *, cosine_dim: int | None = None) -> tuple[sql.Composed, dict]:
    """Full-text top-%(limit)s over the generated tsvector of heading path + text (migration 0014),
    with the same filters; %(tsq)s is an
    OR of the query's terms (to_tsquery syntax, built by storage.corpus.tsquery_terms). With
    cosine_dim, each row also carries its cosine similarity to the vector %(q)s (the relevance
    floor needs it for chunks the dense arm did not return)."""
    where, params = compile_filters(filters)
    cosine = (sql.SQL(", 1 - ({distance}) AS cosine").format(distance=_distance(dialect, cosine_dim))
              if cosine_dim is not None else sql.SQL(""))
    q = sql.SQL("""
SELECT c.id::text AS chunk_id, c.document_id::text AS document_id, d.source_path, d.title,
       c.heading_path, c.content, c.ordinal, ts_rank(c.ctx_tsv, tq.query) AS score{cosine}
FROM chunks c JOIN documents d ON d.id = c.document_id,
     (SELECT to_tsquery('english', %(tsq)s) AS query) AS tq
WHERE c.ctx_tsv @@ tq.query AND c.dim = %(dim)s AND c.embed_model = %(model)s{where}
ORDER BY score DESC, c.id
LIMIT %(limit)s
""").format(where=where, cosine=cosine)
    return q, params


def exact_vector_search(dialect: str, dim: int) -> sql.Composed:
    """Exact top-k (no index: a sequential scan with a sort) — the benchmark's ground truth."""
    d = _dim(dim)
    if dialect == "cockroachdb":
        dist = sql.SQL("c.embedding <=> %(q)s::VECTOR({d})").format(d=sql.Literal(d))
    else:
        # An expression the index does not match (+ 0), so the planner cannot use HNSW.
        dist = sql.SQL("((c.embedding::vector({d})) <=> %(q)s::vector({d})) + 0").format(d=sql.Literal(d))
    return sql.SQL(
        "SELECT c.id::text AS chunk_id FROM chunks c WHERE c.dim = {d} AND c.embed_model = %(model)s "
        "ORDER BY {dist} LIMIT %(limit)s").format(d=sql.Literal(d), dist=dist)


def note_mean_cosine(dialect: str, dim: int) -> sql.Composed:
    """Each listed document's mean cosine similarity over ALL its chunks to %(q)s: a note whose
    chunks all match ranks above one with a single lucky chunk (per-note aggregation)."""
    return sql.SQL("""
SELECT c.document_id::text AS document_id, avg(1 - ({distance})) AS mean_cosine
FROM chunks c
WHERE c.document_id = ANY(%(ids)s::UUID[]) AND c.dim = {dim} AND c.embed_model = %(model)s
GROUP BY c.document_id
""").format(distance=_distance(dialect, dim), dim=sql.Literal(_dim(dim)))


# For evals/retrieval/study.py (an eval, not the product): every chunk's heading path under a
# source prefix, in order, and an experimental full-text ranking with the heading path weighted A
# and the text D (ts_rank's default weights 1.0 / 0.1) over the same matching chunks as production.
HEADING_PATHS_UNDER_PREFIX = """
SELECT d.source_path, c.heading_path FROM chunks c JOIN documents d ON d.id = c.document_id
WHERE d.source_path LIKE %(p)s ORDER BY d.source_path, c.ordinal
"""
HEADING_WEIGHTED_TEXT_SEARCH = """
SELECT d.source_path, ts_rank(setweight(to_tsvector('english', c.heading_path), 'A')
                              || setweight(to_tsvector('english', c.content), 'D'), tq.query) AS score
FROM chunks c JOIN documents d ON d.id = c.document_id, (SELECT to_tsquery('english', %(tsq)s) AS query) AS tq
WHERE c.ctx_tsv @@ tq.query AND d.source_path LIKE %(p)s
ORDER BY score DESC, c.id LIMIT %(limit)s
"""
