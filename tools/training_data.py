"""Editors' decisions as training data: SFT examples and DPO pairs with provenance.

SFT: one example per published post: the first-draft prompt the Writer was given (topic + research
notes, as sent) and, as the assistant's answer, the post's final approved text; a human edit of
that text is preferred over the Writer's version (drafts.author != 'writer').
DPO: per published post, one pair per draft a human sent back (revise) or rejected: the same
prompt, chosen = the approved text, rejected = that draft.
Each record carries its provenance: thread, the versions involved, who decided what, when, and the
hash of the approval payload they answered. Posts with no draft rows (decided before drafts were
kept) are reported as skipped, with the reason.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from storage.db import Database
from storage.training import decided_posts

EXPORT_FORMAT = "newsroom-training/1"


@dataclass
class Export:
    sft: list[dict] = field(default_factory=list)
    dpo: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    posts: int = 0


def _text(draft: dict) -> str:
    return f"# {draft['title']}\n\n{draft['body']}".strip()


def _prompt_messages(drafts: list[dict]) -> list[dict] | None:
    """The post's first-draft request (system + user), as the Writer received it."""
    first = next((d for d in drafts if d["version"] == 1), drafts[0] if drafts else None)
    if first is None:
        return None
    messages = first["messages"] if isinstance(first["messages"], list) else json.loads(first["messages"] or "[]")
    return [{"role": m["role"], "content": m["content"]} for m in messages if m.get("role") in ("system", "user")]


def build_export(data: dict[str, list[dict]]) -> Export:
    """SFT examples and DPO pairs from decided_posts() rows (pure: no I/O)."""
    out = Export(posts=len(data["posts"]))
    drafts_of: dict[str, list[dict]] = defaultdict(list)
    for d in data["drafts"]:
        drafts_of[d["thread_id"]].append(d)
    decisions_of: dict[str, list[dict]] = defaultdict(list)
    for e in data["decisions"]:
        decisions_of[e["thread_id"]].append(e)
    published_hashes: dict[str, set[str]] = defaultdict(set)
    for p in data["publications"]:
        published_hashes[p["thread_id"]].add(p["draft_hash"])

    for post in data["posts"]:
        tid = post["thread_id"]
        drafts = sorted(drafts_of.get(tid, []), key=lambda d: d["version"])
        decisions = decisions_of.get(tid, [])
        if not drafts:
            out.skipped.append({"thread_id": tid, "reason": "no draft rows (decided before drafts were kept)"})
            continue
        prompt = _prompt_messages(drafts)
        if not prompt:
            out.skipped.append({"thread_id": tid, "reason": "the first draft's prompt was not kept"})
            continue
        # approve_with_edits approves the human's edit of the shown draft (the edit is the final text below).
        approvals = [e for e in decisions if e["decision"] in ("approve", "approve_with_edits")]
        if post["status"] != "published" or not approvals:
            out.skipped.append({"thread_id": tid, "reason": f"{post['status']}: no approved text to learn from"
                                                              + (" (DPO needs one)" if decisions else "")})
            continue
        approval = approvals[-1]
        approved_version = int(approval["draft_version"] or drafts[-1]["version"])
        by_version = {d["version"]: d for d in drafts}
        approved = by_version.get(approved_version)
        if approved is None:
            out.skipped.append({"thread_id": tid, "reason": f"approved draft v{approved_version} has no row"})
            continue
        # A human edit of the approved text (a later row by a person, same post) wins over the Writer's.
        edits = [d for d in drafts if d["author"] != "writer" and d["version"] >= approved_version]
        final = edits[-1] if edits else approved
        published = published_hashes.get(tid, set())
        base = {"thread_id": tid, "topic": post["topic"], "format": EXPORT_FORMAT}
        chosen_prov = {"version": final["version"], "content_hash": final["content_hash"], "author": final["author"],
                       "model": final["model"], "prompt": final["prompt"], "decision": "approve",
                       "reviewer": approval["reviewer"], "decided_at": str(approval["at"]),
                       "payload_hash": approval["payload_hash"], "published": final["content_hash"] in published}
        out.sft.append({
            "messages": [*prompt, {"role": "assistant", "content": _text(final)}],
            "provenance": {**base, "kind": "sft", "prompt_version": 1, "chosen": chosen_prov,
                           "human_edited": final["author"] != "writer"},
        })
        for e in decisions:
            if e["decision"] not in ("revise", "reject", "edit", "approve_with_edits"):  # an edited draft lost too
                continue
            d = by_version.get(int(e["draft_version"] or 0))
            if d is None or d["content_hash"] == final["content_hash"]:
                continue
            out.dpo.append({
                "prompt": prompt, "chosen": _text(final), "rejected": _text(d),
                "provenance": {**base, "kind": "dpo", "chosen": chosen_prov,
                               "rejected": {"version": d["version"], "content_hash": d["content_hash"],
                                            "model": d["model"], "prompt": d["prompt"], "decision": e["decision"],
                                            "reviewer": e["reviewer"], "decided_at": str(e["at"]),
                                            "payload_hash": e["payload_hash"], "feedback": e["feedback"]}},
            })
    return out


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    text = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False, default=str) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def export_training(db: Database, out_dir: Path) -> dict:
    """Write sft.jsonl, dpo.jsonl and manifest.json into out_dir; returns the manifest."""
    export = build_export(await decided_posts(db))
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": EXPORT_FORMAT, "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "posts_considered": export.posts,
        "sft": {"file": "sft.jsonl", "examples": len(export.sft), "sha256": _write_jsonl(out_dir / "sft.jsonl", export.sft)},
        "dpo": {"file": "dpo.jsonl", "pairs": len(export.dpo), "sha256": _write_jsonl(out_dir / "dpo.jsonl", export.dpo)},
        "skipped": export.skipped,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


__all__ = ["EXPORT_FORMAT", "Export", "build_export", "export_training"]
