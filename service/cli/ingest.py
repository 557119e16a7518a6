"""`newsroom ingest PATH...` (registered by service/cli/__init__.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from service.cli.common import run


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

    async def _ingest():
        if quiet or not sys.stderr.isatty() and not sys.stdout.isatty():
            return await ingest_paths(paths, reembed=reembed, prune=prune)
        click.echo(f"loading the embedder and ingesting {total} file(s)...", err=True)
        with click.progressbar(length=total, label="ingesting", file=sys.stderr, show_pos=True,
                               item_show_func=lambda s: s) as bar:
            def progress(done: int, _total: int, path: str, status: str) -> None:
                bar.current_item = f"{status:<9} {path}"[:60]
                bar.update(1)

            return await ingest_paths(paths, progress=progress, reembed=reembed, prune=prune)

    try:
        report = run(_ingest())  # closes the database before the loop ends
    except (EmbeddingMismatchError, EmbedderError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(report.summary())
    for path, err in report.failed:
        click.echo(f"  failed: {path}: {err}", err=True)
    if report.failed:
        sys.exit(1)
