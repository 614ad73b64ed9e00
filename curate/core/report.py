"""The readable end-of-run summary."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_summary(res, console: Console | None = None) -> None:
    console = console or Console()
    if res.dry_run:
        console.print(f"[bold]dry run[/] on {res.runner}: the job graph was built; nothing was read, written or submitted.")
        console.print(f"input: {', '.join(res.recipe.input.path)}", markup=False, highlight=False)
        console.print(f"stages: {' -> '.join(res.names + ['write'])}", markup=False, highlight=False)
        if res.job_steps:
            console.print("steps: " + ", ".join(res.job_steps), markup=False, highlight=False)
        console.print(f"output: {res.recipe.output.path}", markup=False, highlight=False)
        return
    t = Table(title=f"curate run: {res.recipe.source_file}", title_justify="left")
    for col in ("stage", "in", "kept", "dropped", "errors", "reasons"):
        t.add_column(col, justify="right" if col in ("in", "kept", "dropped", "errors") else "left")
    for name in res.names + ["write"]:
        s = res.stats[name]
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(s.dropped.items(), key=lambda kv: -kv[1]))
        if s.flagged:
            reasons += (" | " if reasons else "") + "flagged: " + ", ".join(f"{k} {v:,}" for k, v in s.flagged.items())
        t.add_row(name, f"{s.n_in:,}", f"{s.kept:,}", f"{s.n_dropped:,}", f"{s.errors:,}", reasons)
    console.print(t)
    total_in = res.stats["read"].n_in
    written = res.stats["write"].kept
    dropped = sum(res.stats[n].n_dropped for n in res.names)
    errors = sum(res.stats[n].errors for n in res.names)
    ok = "[green]balanced[/]" if not res.problems else "[red]DOES NOT BALANCE[/]"
    console.print(
        f"ledger {ok}: {total_in:,} in = {written:,} written + {dropped:,} dropped + {errors:,} errors"
        f"   ({res.seconds:.1f}s, {total_in / max(res.seconds, 1e-9):,.0f} docs/s, runner: {res.runner})"
    )
    if res.info:
        console.print("info: " + ", ".join(f"{k} {v:,}" for k, v in res.info.items()))
    if res.top_errors:
        console.print("top errors (all in errors/):")
        for e in res.top_errors:
            console.print(f"  {e['stage']}: {e['reason']} x{e['n']:,}   e.g. {e['example']}", markup=False, highlight=False)
    for line in res.failed:
        console.print(f"[red]FAILED[/] {line}", highlight=False)
    console.print(f"output: {res.recipe.output.path}  (data/, errors/{', rejected/' if res.recipe.output.write_rejected else ''}, stats.json)")
