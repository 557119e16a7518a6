"""Run every benchmark module of a package, one subprocess each, and print a summary.

    python -m evals.bench.run_all [--package evals.bench] [--only NAME ...] [--skip NAME ...]
                                  [--timeout 3600] [--quick]

A benchmark is any module of the package (found on disk, so new ones join without an edit here)
that has an `if __name__ == "__main__":` block and does not set NOT_A_BENCHMARK = True. Each runs
with its own defaults (`python -m <package>.<name>`); by convention its last printed line is one
JSON object, which is collected. `make bench` runs evals.bench, `make chaos` evals.chaos.
--quick passes each module its own QUICK_ARGS (a module-level list of strings), when it has one.
A module whose JSON has a "goals" list ({"name", "measured", "goal", "met", "detail"}: a figure
with its goal, measured in that run) gets those printed in the summary, so `make bench` shows
each goal beside its figure.
The last line printed is one JSON object: {name: {"rc", "seconds", "figures"}}.
"""
from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module_info(path: Path) -> tuple[bool, list[str] | None]:
    """(is a benchmark, QUICK_ARGS or None), read from the source without importing it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    has_main, opted_out, quick = False, False, None
    for node in tree.body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            has_main = True
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name == "NOT_A_BENCHMARK":
                opted_out = bool(ast.literal_eval(node.value))
            elif name == "QUICK_ARGS":
                quick = [str(a) for a in ast.literal_eval(node.value)]
    return has_main and not opted_out, quick


def discover(package: str) -> dict[str, list[str] | None]:
    folder = ROOT.joinpath(*package.split("."))
    found = {}
    for path in sorted(folder.glob("*.py")):
        if path.stem in ("__init__", "run_all") or path.stem.startswith("_"):
            continue
        is_bench, quick = _module_info(path)
        if is_bench:
            found[path.stem] = quick
    return found


def _last_json(stdout: str) -> dict | None:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _headline(figures: dict | None) -> str:
    if not figures:
        return "(no JSON line)"
    flat = {k: v for k, v in figures.items() if isinstance(v, (int, float, str, bool)) and len(str(v)) < 40}
    return ", ".join(f"{k}={v}" for k, v in list(flat.items())[:8])


def _goal_lines(figures: dict | None) -> list[str]:
    lines = []
    for g in (figures or {}).get("goals") or []:
        if not isinstance(g, dict):
            continue
        verdict = {True: "met", False: "MISSED", None: ""}.get(g.get("met"), "")
        measured = "not measured in this run" if g.get("measured") is None else g.get("measured")
        lines.append(f"goal: {g.get('name')}: {measured} (goal {g.get('goal')}) {verdict} "
                     f"{g.get('detail') or ''}".rstrip())
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="run every benchmark of a package")
    ap.add_argument("--package", default="evals.bench")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--skip", nargs="*", default=[])
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per module")
    ap.add_argument("--quick", action="store_true", help="each module's QUICK_ARGS, when it has them")
    args = ap.parse_args(argv)
    modules = discover(args.package)
    names = [n for n in modules if (not args.only or n in args.only) and n not in args.skip]
    print(f"{args.package}: {', '.join(names) or 'nothing to run'}", flush=True)
    results: dict[str, dict] = {}
    for name in names:
        cmd = [sys.executable, "-m", f"{args.package}.{name}", *((modules[name] or []) if args.quick else [])]
        print(f"\n=== {' '.join(cmd[1:])}", flush=True)
        t0 = time.monotonic()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
            rc, out, err = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            rc, out, err = -1, (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or ""), "timeout"
        seconds = round(time.monotonic() - t0, 1)
        lines = out.strip().splitlines()
        for line in lines[:-1][-12:]:  # the human-readable part, trimmed
            print("  " + line[:200])
        if rc != 0:
            print("  stderr: " + (err or "").strip()[-800:].replace("\n", "\n  "))
        figures = _last_json(out)
        results[name] = {"rc": rc, "seconds": seconds, "figures": figures}
        print(f"  -> rc {rc} in {seconds}s: {_headline(figures)}", flush=True)
    print("\nsummary:")
    for name, r in results.items():
        print(f"  {'ok  ' if r['rc'] == 0 else 'FAIL'} {name:<24} {r['seconds']:>7}s  {_headline(r['figures'])[:150]}")
        for line in _goal_lines(r["figures"]):
            print("       " + line)
    print(json.dumps(results, default=str))
    return 0 if all(r["rc"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
