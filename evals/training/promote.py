"""`newsroom promote-adapter NAME`: evaluate a candidate writer adapter against the current one on
the writer eval set and promote it only if it wins. It lives with the eval it runs; the
`newsroom.commands` entry point in pyproject.toml registers it with the CLI (service/ never
imports evals/)."""
from __future__ import annotations

import json

import click

from config import get_settings
from service.cli.common import run

# --- promotion --------------------------------------------------------------------------------------

async def promote(name: str, *, vllm_url: str, api_key: str | None, judge: bool, force: bool, limit: int,
                  load_only: bool = False, echo=click.echo) -> dict:
    """Load the candidate into the running vLLM (by name, no restart), evaluate it against the
    family's current writer on the same items, record the result, and promote it only if it wins
    (or --force). A refused candidate is unloaded again."""
    from evals.training.writer_eval import beats, eval_items, eval_set_hash, evaluate_writer
    from storage.connect import get_database
    from storage.training import AdapterNotFound, decide_adapter, get_adapter, promoted_adapter
    from tools.llm import LLMGateway, Route
    from tools.vllm_admin import listed_models, load_adapter, unload_adapter

    s = get_settings()
    db = await get_database()
    row = await get_adapter(db, name)
    if row is None:
        raise AdapterNotFound(f"no adapter named {name!r} (newsroom adapters)")
    echo(f"loading {name} into {vllm_url}: {load_adapter(vllm_url, name, row['path'], api_key=api_key)}")
    if load_only:
        return {"name": name, "status": row["status"], "loaded": True}
    if row["status"] not in ("candidate", "refused"):
        raise click.ClickException(f"adapter {name} is {row['status']}: only a candidate (or a refused one, "
                                   "evaluated again) can be promoted")
    current = await promoted_adapter(db, row["family"])
    current_model = current["name"] if current else row["family"]
    listed = listed_models(vllm_url, api_key=api_key)
    if current_model not in listed:
        if current is not None:
            load_adapter(vllm_url, current_model, current["path"], api_key=api_key)
        else:
            raise click.ClickException(f"the current writer {current_model!r} is not served on {vllm_url} "
                                       f"(listed: {listed}): nothing to compare against")
    items = eval_items(limit)
    reports = {}
    for role_model in (name, current_model):
        routes = {"writer": [Route(provider="vllm", base_url=vllm_url, model=role_model)],
                  "judge": [Route(provider="vllm", base_url=vllm_url, model=_base_model_of(listed, vllm_url, api_key))]}
        gw = LLMGateway(s, routes=routes, recorder=None, registry=None)
        try:
            reports[role_model] = (await evaluate_writer(gw, role_model, items, judge=judge)).as_dict()
        finally:
            await gw.aclose()
        echo(f"  {role_model}: faithfulness {reports[role_model]['faithfulness']}"
             + (f", judge mean {reports[role_model]['judge_mean']}" if judge else ""))
    won = beats(reports[name], reports[current_model])
    evaluation = {"candidate": reports[name], "current": reports[current_model], "current_model": current_model,
                  "eval_set": eval_set_hash(items), "items": len(items), "won": won, "forced": force and not won,
                  "rule": "faithfulness strictly higher, or equal with a higher judge mean"}
    decided = await decide_adapter(db, name, promote=won or force, evaluation=evaluation)
    if decided["status"] == "promoted":
        echo(f"promoted {name} ({'won' if won else 'FORCED without winning'}) over {current_model}; "
             f"the writer serves it by name (NEWSROOM_WRITER_ADAPTER_REGISTRY=true)")
    else:
        unload_adapter(vllm_url, name, api_key=api_key)
        echo(f"not promoted: {name} did not beat {current_model} (unloaded again)")
    return {**decided, "evaluation": evaluation}


def _base_model_of(listed: list[str], vllm_url: str, api_key: str | None) -> str:
    """The served base model (vLLM lists it first; adapters name it as their parent)."""
    import httpx

    try:
        data = httpx.get(vllm_url.rstrip("/") + "/models", timeout=10,
                         headers={"Authorization": f"Bearer {api_key}"} if api_key else {}).json()["data"]
        bases = [m["id"] for m in data if not m.get("parent")]
        return bases[0] if bases else listed[0]
    except (httpx.HTTPError, ValueError, KeyError, IndexError):
        return listed[0]


@click.command("promote-adapter")
@click.argument("name")
@click.option("--vllm-url", default=None, help="the running vLLM (default NEWSROOM_LLM_BASE_URL)")
@click.option("--judge/--no-judge", default=False, show_default=True,
              help="also score each draft with the Editor's rubric on the served base model")
@click.option("--force", is_flag=True, help="promote even without winning (recorded as forced)")
@click.option("--limit", type=click.IntRange(1, 50), default=4, show_default=True, help="eval items")
@click.option("--load-only", is_flag=True, help="only load NAME into the running vLLM (after a vLLM restart)")
def promote_adapter_command(name: str, vllm_url: str | None, judge: bool, force: bool, limit: int,
                            load_only: bool) -> None:
    """Evaluate a candidate adapter against the current writer and promote it if it wins."""
    from storage.training import AdapterNotFound, AdapterStateError
    from tools.vllm_admin import VLLMAdminError

    s = get_settings()
    key = s.llm_api_key.get_secret_value()
    try:
        out = run(promote(name, vllm_url=vllm_url or s.llm_base_url, api_key=key, judge=judge, force=force,
                           limit=limit, load_only=load_only))
    except (AdapterNotFound, AdapterStateError, VLLMAdminError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(json.dumps({k: v for k, v in out.items() if k != "evaluation"}, default=str))
