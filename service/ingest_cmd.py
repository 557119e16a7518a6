"""`newsroom ingest PATH...` and `newsroom eval-retrieval` (registered by service/cli.py)."""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click


@click.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--reembed", is_flag=True,
              help="the embedder changed: re-embed every stored document (those whose file is gone are removed)")
@click.option("--prune", is_flag=True,
              help="also remove stored documents under the given folders whose file was deleted")
@click.option("--quiet", "-q", is_flag=True, help="no progress bar")
def ingest_command(paths: tuple[Path, ...], reembed: bool, prune: bool, quiet: bool) -> None:
    """Ingest Markdown, text and HTML files or folders into the retrieval corpus.

    Unchanged files are skipped (nothing is written); a changed file's chunks are replaced in one
    transaction. Chunks never exceed the embedder's max sequence length.
    """
    from storage.corpus import EmbeddingMismatchError
    from tools.embeddings import EmbedderError
    from tools.ingest import discover_files, ingest_paths

    try:
        total = len(discover_files(paths))
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    if total == 0:
        raise click.ClickException("no .md, .markdown, .txt, .html or .htm files found")

    async def _run():
        from storage.connect import close_database

        try:
            if quiet or not sys.stderr.isatty() and not sys.stdout.isatty():
                return await ingest_paths(paths, reembed=reembed, prune=prune)
            click.echo(f"loading the embedder and ingesting {total} file(s)...", err=True)
            with click.progressbar(length=total, label="ingesting", file=sys.stderr, show_pos=True,
                                   item_show_func=lambda s: s) as bar:
                def progress(done: int, _total: int, path: str, status: str) -> None:
                    bar.current_item = f"{status:<9} {path}"[:60]
                    bar.update(1)

                return await ingest_paths(paths, progress=progress, reembed=reembed, prune=prune)
        finally:
            await close_database()

    try:
        report = asyncio.run(_run())
    except (EmbeddingMismatchError, EmbedderError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(report.summary())
    for path, err in report.failed:
        click.echo(f"  failed: {path}: {err}", err=True)
    if report.failed:
        sys.exit(1)


@click.command("eval-retrieval")
@click.option("--corpus", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="notes folder (default: evals/corpus)")
@click.option("--queries", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSONL query set (default: evals/retrieval/queries.jsonl)")
@click.option("--modes", default="baseline,hyde,hybrid,hyde+hybrid", show_default=True)
@click.option("-k", default=5, show_default=True)
@click.option("--hypotheses", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSONL cache of HyDE hypotheses (read, and appended to)")
@click.option("--hyde-combine", type=click.Choice(["sum", "hypothesis"]), default="sum", show_default=True,
              help="search with query+hypothesis embeddings, or the hypothesis alone")
def eval_retrieval_command(corpus, queries, modes, k, hypotheses, hyde_combine) -> None:
    """Print hit@k, top-1 and MRR for baseline, HyDE and hybrid retrieval on the query set."""
    from evals.retrieval.run import DEFAULT_CORPUS, DEFAULT_QUERIES, run_with_llm
    from storage.corpus import EmbeddingMismatchError

    async def _run():
        from storage.connect import close_database

        try:
            return await run_with_llm(corpus=corpus or DEFAULT_CORPUS, queries_path=queries or DEFAULT_QUERIES,
                                      modes=[m.strip() for m in modes.split(",") if m.strip()], k=k,
                                      hypotheses=hypotheses, hyde_combine=hyde_combine, echo=click.echo)
        finally:
            await close_database()

    try:
        out = asyncio.run(_run())
    except (EmbeddingMismatchError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps(out["summary"]))


@click.command("eval-faithfulness")
@click.option("--live-topics", type=int, default=20, show_default=True,
              help="live posts (research -> draft -> citation check) on the first N topics of evals/retrieval/topics.jsonl")
@click.option("--no-live", is_flag=True, help="the planted-error set only")
@click.option("--no-planted", is_flag=True, help="the live posts only")
@click.option("--rules-only", is_flag=True, help="the deterministic checks alone (no claim-support call)")
def eval_faithfulness_command(live_topics, no_live, no_planted, rules_only) -> None:
    """Citation check on the planted-error set (caught / false alarms) and the support rate of live posts."""
    from evals.faithfulness.run import run_with_llm
    from storage.corpus import EmbeddingMismatchError

    async def _run():
        from storage.connect import close_database

        try:
            return await run_with_llm(live=0 if no_live else live_topics, planted=not no_planted,
                                      rules_only=rules_only, echo=click.echo)
        finally:
            await close_database()

    try:
        out = asyncio.run(_run())
    except (EmbeddingMismatchError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps(out, default=str))
