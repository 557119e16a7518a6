"""How the CLI shows a run: a progress line per desk step, the approval gate (service/views.GateView
as plain text), how the run ended, and the command to type next."""
from __future__ import annotations

import textwrap

import click


def progress(desk: str, msg: str, t: float) -> None:
    click.echo(f"  [{t:6.1f}s] {desk:<16} {msg}", err=False)


def print_gate(snap) -> None:
    from service.views import GateView, Verdict

    g = GateView.of(snap.interrupt, snap.thread_id)
    label = "ESCALATED to human review" if g.escalated else "waiting for approval"
    click.echo(f"\nthread {g.thread_id}: {label}" + (f" ({g.escalation_reason})" if g.escalated else ""))
    click.echo(f"draft v{g.version}: {g.title}" + (f"  (edited by {g.edited_by})" if g.edited_by else ""))
    if g.sections:
        click.echo("sections: " + " | ".join(g.sections))
    opening = textwrap.shorten(g.body.replace("\n", " "), width=600, placeholder=" ...")
    click.echo(textwrap.indent(textwrap.fill(opening, 96), "  | "))
    click.echo({
        Verdict.SCORED: "scores: " + "  ".join(f"{k}={v}" for k, v in g.scores.items())
                        + f"  mean={g.mean:.2f}  flag={g.flag}  editor={g.editor_decision}" if g.scores else "",
        Verdict.HUMAN_EDIT: "scores: none (a human's edit: citation check only, no rubric verdict)",
        Verdict.OVER_BUDGET: f"scores: none (not reviewed: the run stopped over budget before the {g.stopped_before})",
        Verdict.INVALID: "scores: none (the judge's verdict did not validate)",
        Verdict.NOT_JUDGED: "scores: none (not judged: " + ("no rubric verdict asked, NEWSROOM_RUBRIC_JUDGE is off)"
                                                          if g.citation_check and g.citation_check["passed"]
                                                          else "the citation check failed)"),
    }[g.verdict])
    check = g.citation_check
    if check:
        rate = "-" if check["support_rate"] is None else f"{check['support_rate']:.0%}"
        click.echo(f"citation check: support {rate} ({check['supported']}/{check['checked']} cited claims), "
                   f"{'passed' if check['passed'] else 'UNSUPPORTED CLAIMS'}, by {check['checked_by']}"
                   + (f" (claim check failed: {check['error'][:120]})" if check.get("error") else ""))
        for bad in g.unsupported:
            click.echo(f"  x {textwrap.shorten(bad['sentence'], 100)}: {'; '.join(bad['problems'])[:160]}")
    click.echo(f"citations: {len(g.citations)} ({'grounded' if g.grounded else 'UNGROUNDED'})"
               f"   revision cycles: {g.revision}   cost: ${g.cost_usd:.4f} ({g.tokens} tokens)"
               + (f" of a ${g.budget_usd:.4f} budget" if g.budget_usd is not None else ""))
    if g.ungrounded_reason:
        click.echo(f"ungrounded: {g.ungrounded_reason}")
    for err in g.fetch_errors:
        click.echo(f"not fetched: {err}")


def print_outcome(snap) -> None:
    v = snap.values or {}
    if snap.waiting_for_human:
        print_gate(snap)
        return
    outcome = v.get("outcome", "unknown")
    click.echo(f"\nthread {snap.thread_id}: {outcome}")
    if v.get("publication"):
        click.echo(f"published to {v['publication']['location']}")
    if v.get("error"):
        click.echo(f"reason: {v['error']}")


def print_next(snap) -> None:
    if snap.waiting_for_human:
        v = f" --version {snap.interrupt['draft']['version']}"  # refused if another draft waits by then
        click.echo(f"\nnext: newsroom approve {snap.thread_id}{v}\n   or newsroom revise {snap.thread_id}{v} --feedback '...'"
                   " [--section HEADING]"
                   f"\n   or newsroom edit {snap.thread_id}{v} [--file F] [--approve]"
                   f"\n   or newsroom reject {snap.thread_id}{v} --reason '...'")
    elif (snap.values or {}).get("outcome") == "failed":
        click.echo(f"\nonce the cause is fixed: newsroom retry {snap.thread_id}")
        click.get_current_context().exit(1)
