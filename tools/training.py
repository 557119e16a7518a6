"""LoRA / QLoRA training of the Writer's adapter from exported SFT examples (`newsroom train-adapter`).

    base = hf_base_model("smollm2", cache_dir)          # the packaged GGUF converted to HF format, once
    result = train_adapter(data=Path("export/sft.jsonl"), base=base, out=Path("adapters/w-1"),
                           recipe=RECIPES["cpu-tiny"], name="newsroom-writer-1")

Recipes: `cpu-tiny` trains a small LoRA on SmolLM2-135M on a CPU in seconds (tests, the committed
fixture); `llama31-8b-qlora` is the seed's recipe for a GPU host (Llama 3.1 8B Instruct, QLoRA NF4,
r=16, alpha 32, lr 2e-4, all linear projections: a ~160 MiB adapter). QLoRA needs bitsandbytes;
where it is not importable the adapter is trained as plain LoRA and the manifest says so.

The loop is a plain PyTorch one (AdamW, loss on the assistant's tokens only): the same code runs on
a CPU and on a GPU, with no Trainer configuration to drift between the two. The adapter folder is
what vLLM's --lora-modules and /v1/load_lora_adapter read (adapter_config.json +
adapter_model.safetensors), plus manifest.json: base model, data hash, examples, losses, versions.

Needs the `train` extra (peft, gguf, bitsandbytes; transformers and torch come with the embedder).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


class TrainingError(RuntimeError):
    """Training cannot run (missing extra, bad data, unknown base), with what to do."""


@dataclass(frozen=True)
class Recipe:
    name: str
    r: int
    alpha: int
    lr: float
    target_modules: tuple[str, ...]
    dropout: float = 0.0
    steps: int | None = None  # None: `epochs` passes over the data
    epochs: float = 1.0
    batch_size: int = 1
    grad_accum: int = 1
    max_len: int = 1024
    qlora: bool = False
    dtype: str = "float32"  # compute dtype of the frozen base
    warmup_steps: int = 0
    gradient_checkpointing: bool = False
    base: str | None = None  # the base model the recipe is for (None: any)
    seed: int = 13


ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
RECIPES: dict[str, Recipe] = {
    # Seconds on 2 CPU cores for SmolLM2-135M: a real gradient step, a ~1.8 MB adapter.
    "cpu-tiny": Recipe(name="cpu-tiny", r=8, alpha=16, lr=1e-3, target_modules=("q_proj", "v_proj"), steps=6,
                       batch_size=1, max_len=768),
    # The seed's recipe (a GPU host; deploy/vllm/train-qlora.sh): r=16, alpha 32, lr 2e-4 on
    # Llama 3.1 8B Instruct, QLoRA NF4. Expected envelope from the seed: a 161 MB adapter
    # (r=16 over all linear projections, fp32), ~5 min for 550 examples on one A100.
    "llama31-8b-qlora": Recipe(name="llama31-8b-qlora", r=16, alpha=32, lr=2e-4, target_modules=ALL_LINEAR,
                               dropout=0.05, epochs=2.0, batch_size=4, grad_accum=4, max_len=2048, qlora=True,
                               dtype="bfloat16", warmup_steps=10, gradient_checkpointing=True,
                               base="meta-llama/Llama-3.1-8B-Instruct"),
}


def require_extra() -> None:
    missing = [m for m in ("torch", "transformers", "peft", "safetensors") if importlib.util.find_spec(m) is None]
    if missing:
        raise TrainingError(f"training needs {', '.join(missing)}: pip install -e '.[train]' (make test-train does)")


def _versions() -> dict[str, str | None]:
    out = {}
    for pkg in ("torch", "transformers", "peft", "bitsandbytes", "gguf"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# --- the base model in HF format ------------------------------------------------------------------

HF_DIRS = {"smollm2": "smollm2-135m-instruct-hf"}


def convert_gguf_to_hf(gguf: Path, out: Path, *, dtype: str = "bfloat16") -> Path:
    """A packaged GGUF as a Hugging Face model folder (what vLLM and peft load).

    transformers reads a GGUF and dequantizes it, but refuses to save a model it marked as
    GGUF-quantized: the config loses its quantization_config, a plain model is built from it and
    given the dequantized weights, and that is saved (bf16 by default). Written to a temporary
    folder and renamed when complete."""
    require_extra()
    if importlib.util.find_spec("gguf") is None:
        raise TrainingError("converting a GGUF needs the `gguf` package: pip install -e '.[train]'")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    # Tied embeddings: lm_head.weight is the embedding matrix, so "missing" from a GGUF that stores it once.
    if [m for m in missing if m != "lm_head.weight"] or unexpected:
        raise TrainingError(f"the GGUF's weights do not fit the model built from its config "
                            f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    plain.save_pretrained(str(tmp), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(str(tmp))
    (tmp / "converted-from.json").write_text(json.dumps({
        "gguf": str(gguf), "gguf_size": gguf.stat().st_size, "dtype": dtype, "versions": _versions(),
        "seconds": round(time.monotonic() - started, 1)}, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def hf_base_model(base: str, cache_dir: Path | None = None, echo: Callable[[str], None] | None = None) -> Path | str:
    """A base model for training/serving: `smollm2` = the packaged GGUF converted once per machine
    (cached beside the assembled weights); a folder path as it is; anything else is handed to
    transformers as a model id (a GPU host with the weights in its Hugging Face cache)."""
    if base in HF_DIRS:
        from tools.model_store import default_cache_dir, model_spec, require

        spec = model_spec(base)
        gguf = require(spec)
        out = (cache_dir or default_cache_dir()) / HF_DIRS[base]
        stamp = out / "converted-from.json"
        if stamp.exists():
            try:
                if json.loads(stamp.read_text()).get("gguf_size") == gguf.stat().st_size:
                    return out
            except ValueError:
                pass
        (echo or log.warning)(f"converting {spec.label} ({gguf.name}) to Hugging Face format once for this "
                              f"machine: {out}")
        out.parent.mkdir(parents=True, exist_ok=True)
        return convert_gguf_to_hf(gguf, out)
    path = Path(base).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise TrainingError(f"{path} is not a Hugging Face model folder (no config.json)")
        return path.resolve()
    return base


# --- data --------------------------------------------------------------------------------------------

def load_sft(path: Path) -> list[dict]:
    """SFT records ({"messages": [...], "provenance": {...}}) from a JSONL file; a bad line is an error
    naming the line."""
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise TrainingError(f"{path}:{i}: not JSON ({err})") from None
        msgs = row.get("messages") if isinstance(row, dict) else None
        if (not isinstance(msgs, list) or len(msgs) < 2 or not all(isinstance(m, dict) for m in msgs)
                or msgs[-1].get("role") != "assistant" or not str(msgs[-1].get("content", "")).strip()):
            raise TrainingError(f"{path}:{i}: an SFT record needs messages ending with a non-empty assistant turn")
        rows.append(row)
    if not rows:
        raise TrainingError(f"{path} holds no SFT examples (newsroom export-training writes them from decided posts)")
    return rows


def _ids(tokenizer, messages: list[dict], *, generation_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
    if isinstance(out, dict) or hasattr(out, "input_ids"):
        out = out["input_ids"]
    return list(out)


def tokenize_sft(tokenizer, rows: list[dict], max_len: int) -> tuple[list[dict], int]:
    """input_ids + labels (-100 on the prompt: the loss is on the assistant's answer only).
    A prompt longer than max_len loses its middle (the notes), keeping the system turn's start and
    the request's end. Returns (examples, dropped)."""
    examples, dropped = [], 0
    for row in rows:
        msgs = [{"role": m["role"], "content": str(m["content"])} for m in row["messages"]]
        prompt = _ids(tokenizer, msgs[:-1], generation_prompt=True)
        full = _ids(tokenizer, msgs, generation_prompt=False)
        if full[: len(prompt)] != prompt:  # a template that renders the prompt differently: fall back
            answer = tokenizer(msgs[-1]["content"], add_special_tokens=False)["input_ids"]
            full = prompt + list(answer) + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])
        answer = full[len(prompt):]
        budget_prompt = max_len - min(len(answer), max_len // 2)
        if len(prompt) > budget_prompt:
            head = budget_prompt // 3
            prompt = prompt[:head] + prompt[len(prompt) - (budget_prompt - head):]
        answer = answer[: max_len - len(prompt)]
        if not answer:
            dropped += 1
            continue
        examples.append({"input_ids": prompt + answer, "labels": [-100] * len(prompt) + answer})
    return examples, dropped


# --- training -------------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    path: Path
    manifest: dict = field(default_factory=dict)


def qlora_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def _load_base(base: Path | str, recipe: Recipe, qlora: bool):
    import torch
    from transformers import AutoModelForCausalLM

    dtype = getattr(torch, recipe.dtype)
    kwargs: dict = {"dtype": dtype}
    if qlora:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype)
        if torch.cuda.is_available():
            kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(str(base), **kwargs)
    if not qlora and torch.cuda.is_available():
        model = model.to("cuda")
    return model


def train_adapter(*, data: Path, base: Path | str, out: Path, recipe: Recipe, name: str, family: str,
                  base_label: str | None = None, qlora: bool | None = None, steps: int | None = None,
                  echo: Callable[[str], None] = lambda msg: log.info("%s", msg)) -> TrainResult:
    """Train a LoRA (QLoRA when asked and bitsandbytes is importable) on data (SFT JSONL) and write
    the adapter with its manifest into out (replaced only when training finished)."""
    require_extra()
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoTokenizer

    started = time.monotonic()
    recipe = replace(recipe, steps=steps) if steps is not None else recipe
    want_qlora = recipe.qlora if qlora is None else qlora
    use_qlora = want_qlora and qlora_available()
    if want_qlora and not use_qlora:
        echo("bitsandbytes is not importable: training plain LoRA instead of QLoRA (the manifest records it)")
    rows = load_sft(data)
    data_sha = file_sha256(data)
    random.seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    examples, dropped = tokenize_sft(tokenizer, rows, recipe.max_len)
    if not examples:
        raise TrainingError(f"no example of {data} fits in {recipe.max_len} tokens with an answer left")
    model = _load_base(base, recipe, use_qlora)
    if use_qlora:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=recipe.gradient_checkpointing)
    elif recipe.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    lora = LoraConfig(r=recipe.r, lora_alpha=recipe.alpha, lora_dropout=recipe.dropout,
                      target_modules=list(recipe.target_modules), bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    device = next(model.parameters()).device
    per_step = recipe.batch_size * recipe.grad_accum
    total_steps = recipe.steps or max(1, math.ceil(len(examples) * recipe.epochs / per_step))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recipe.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / recipe.warmup_steps) if recipe.warmup_steps else 1.0)
    echo(f"training {name}: {len(examples)} examples ({dropped} too long), {total_steps} steps of {per_step}, "
         f"r={recipe.r} alpha={recipe.alpha} lr={recipe.lr}, {'QLoRA (NF4)' if use_qlora else 'LoRA'} "
         f"on {base_label or base}, {trainable:,} trainable parameters, {device}")
    order: list[int] = []
    losses: list[float] = []
    model.train()
    for step in range(total_steps):
        step_loss = 0.0
        for _ in range(recipe.grad_accum):
            if len(order) < recipe.batch_size:
                order += random.sample(range(len(examples)), len(examples))
            batch = [examples[order.pop()] for _ in range(recipe.batch_size)]
            width = max(len(e["input_ids"]) for e in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, e in enumerate(batch):
                n = len(e["input_ids"])
                ids[i, :n] = torch.tensor(e["input_ids"])
                labels[i, :n] = torch.tensor(e["labels"])
                mask[i, :n] = 1
            out_ = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
            (out_.loss / recipe.grad_accum).backward()
            step_loss += float(out_.loss.detach()) / recipe.grad_accum
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(round(step_loss, 4))
        echo(f"  step {step + 1}/{total_steps}: loss {step_loss:.4f}")
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    _fix_base_reference(tmp / "adapter_config.json", base_label or str(base))
    (tmp / "README.md").unlink(missing_ok=True)  # peft's blank model card
    tail = losses[-max(1, len(losses) // 4):]
    manifest = {
        "name": name, "family": family, "base_model": base_label or str(base), "base_model_path": str(base),
        "recipe": recipe.name, "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(recipe).items()},
        "qlora": use_qlora, "qlora_requested": want_qlora,
        "data": {"path": str(data), "sha256": data_sha, "examples": len(examples), "dropped_too_long": dropped},
        "examples": len(examples), "steps": total_steps, "trainable_parameters": trainable,
        "loss_first": losses[0], "loss_last": round(sum(tail) / len(tail), 4), "losses": losses,
        "adapter_bytes": sum(p.stat().st_size for p in tmp.iterdir() if p.is_file()),
        "seconds": round(time.monotonic() - started, 1), "device": str(device), "versions": _versions(),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    echo(f"adapter {name}: {out} ({manifest['adapter_bytes'] / 1e6:.1f} MB, loss {losses[0]:.3f} -> "
         f"{manifest['loss_last']:.3f}, {manifest['seconds']:.0f} s)")
    return TrainResult(path=out, manifest=manifest)


def _fix_base_reference(config_path: Path, base_label: str) -> None:
    """adapter_config.json names the base by what it was loaded from (a cache path on this machine);
    record the portable name instead (vLLM ignores it: the served base model is what counts)."""
    cfg = json.loads(config_path.read_text())
    cfg["base_model_name_or_path"] = base_label
    config_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def read_manifest(adapter_dir: Path) -> dict:
    path = adapter_dir / MANIFEST
    if not (adapter_dir / "adapter_config.json").exists():
        raise TrainingError(f"{adapter_dir} is not a PEFT adapter (no adapter_config.json)")
    return json.loads(path.read_text()) if path.exists() else {}


__all__ = [
    "RECIPES",
    "Recipe",
    "TrainResult",
    "TrainingError",
    "convert_gguf_to_hf",
    "file_sha256",
    "hf_base_model",
    "load_sft",
    "qlora_available",
    "read_manifest",
    "tokenize_sft",
    "train_adapter",
]
