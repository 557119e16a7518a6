"""`newsroom eval-retrieval` and `newsroom eval-faithfulness`: the retrieval and citation-check eval
sets on the command line. Registered with the CLI by the `newsroom.commands` entry point in
pyproject.toml, so service/ never imports evals/ (evals sits above service: it drives the engine)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from service.cli.common import run  # asyncio.run that closes the database before the loop ends


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

    try:
        out = run(run_with_llm(corpus=corpus or DEFAULT_CORPUS, queries_path=queries or DEFAULT_QUERIES,
                               modes=[m.strip() for m in modes.split(",") if m.strip()], k=k,
                               hypotheses=hypotheses, hyde_combine=hyde_combine, echo=click.echo))
    except (EmbeddingMismatchError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps(out["summary"]))


@click.command("eval-faithfulness")
@click.option("--live-topics", type=int, default=20, show_default=True,
              help="live posts (research -> draft -> citation check) on the first N topics of evals/retrieval/topics.jsonl")
@click.option("--no-live", is_flag=True, help="the planted-error set only")
@click.option("--no-planted", is_flag=True, help="the live posts only")
@click.option("--rules-only", is_flag=True, help="the deterministic checks alone (no claim-support call)")
@click.option("--no-support", is_flag=True, help="without the embedding support check (the rules as they were)")
@click.option("--planted-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="another planted set than evals/faithfulness/planted.jsonl, e.g. planted-heldout.jsonl (scored whole)")
def eval_faithfulness_command(live_topics, no_live, no_planted, rules_only, no_support, planted_file) -> None:
    """Citation check on the planted-error set (caught / false alarms) and the support rate of live posts."""
    from evals.faithfulness.run import run_with_llm
    from storage.corpus import EmbeddingMismatchError

    try:
        out = run(run_with_llm(live=0 if no_live else live_topics, planted=not no_planted,
                               rules_only=rules_only, support=not no_support, echo=click.echo,
                               planted_file=planted_file))
    except (EmbeddingMismatchError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps(out, default=str))
