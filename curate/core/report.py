"""The readable end-of-run summary."""
from __future__ import annotations

import json
import os

from rich.console import Console
from rich.table import Table


def _rate(x: float) -> str:
    """A rate readable at any size: 12,345 / 12.3 / 0.33 (a slow model stage is not "0 docs/s")."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 1 else f"{x:.2g}"


def print_summary(res, console: Console | None = None) -> None:
    console = console or Console()
    if res.dry_run:
        console.print(f"[bold]dry run[/] on {res.runner}: the job graph was built; nothing was read, written or submitted.")
        console.print(f"input: {', '.join(res.recipe.input.path)}", markup=False, highlight=False)
        console.print(f"stages: {' -> '.join(res.names + ['write'])}", markup=False, highlight=False)
        if res.job_steps:
            console.print("steps: " + ", ".join(res.job_steps), markup=False, highlight=False)
        console.print(f"output: {res.recipe.output.path}", markup=False, highlight=False)
        if getattr(res.recipe.input, "limit", None):
            console.print(f"limit: the first {res.recipe.input.limit:,} documents of the input", highlight=False)
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
        f"   ({res.seconds:.1f}s, {_rate(total_in / max(res.seconds, 1e-9))} docs/s, runner: {res.runner})"
    )
    limit = getattr(res.recipe.input, "limit", None)
    if limit:
        console.print(f"[yellow]limited[/]: --limit {limit:,}: only the first {limit:,} documents of the input were read "
                      "(files in sorted order, records in file order); the figures are of that sample", highlight=False)
    if res.info:
        console.print("info: " + ", ".join(f"{k} {v:,}" for k, v in res.info.items()))
    if res.top_errors:
        console.print("top errors (all in errors/):")
        for e in res.top_errors:
            console.print(f"  {e['stage']}: {e['reason']} x{e['n']:,}   e.g. {e['example']}", markup=False, highlight=False)
    for line in res.failed:
        console.print(f"[red]FAILED[/] {line}", highlight=False)
    console.print(f"output: {res.recipe.output.path}  (data/, errors/{', rejected/' if res.recipe.output.write_rejected else ''}, stats.json)")


# ------------------------------------------------------------------------------ curate stats merge

_LEDGER = ("in", "kept", "errors")


def load_stats(path: str) -> dict:
    """The stats.json of a run: ``path`` is the run's output folder or the file itself (local or gs://)."""
    from curate.core.safety import UserError
    from curate.io.readers import exists, read_bytes
    from curate.io.writers import join

    file = path if path.rstrip("/").endswith(".json") else join(path, "stats.json")
    if not exists(file):
        raise FileNotFoundError(f"{path}: no stats.json (give the output folder of a `curate run` or its stats.json)")
    try:
        data = json.loads(read_bytes(file))
    except ValueError as e:
        raise UserError(f"{file}: not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("stages"), list):
        raise UserError(f"{file}: not the stats.json of a curate run (no 'stages' list)")
    for i, st in enumerate(data["stages"]):
        if not isinstance(st, dict) or not isinstance(st.get("name"), str):
            raise UserError(f"{file}: stages[{i}] has no name")
        for key in _LEDGER:
            if not _count(st.get(key, 0)):
                raise UserError(f"{file}: stage {st['name']!r}: {key!r} is {st.get(key)!r}, not a count")
        for key in ("dropped", "flagged"):
            d = st.get(key) or {}
            if not isinstance(d, dict) or not all(_count(v) for v in d.values()):
                raise UserError(f"{file}: stage {st['name']!r}: {key!r} must map reasons to counts")
    data["_file"] = file
    return data


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _add(into: dict, d: dict) -> None:
    for k, v in (d or {}).items():
        into[k] = into.get(k, 0) + v


def merge_stats(paths: list[str], allow_mismatch: bool = False) -> dict:
    """Sum the per-stage ledgers (in, kept, dropped per reason, flagged, errors) of several runs' stats.json.

    Runs of different recipes (another recipe file, or other stages in another order) are refused
    unless ``allow_mismatch``; then stages are matched by name and a stage missing from a run counts
    nothing there. The same stats.json given twice is refused (it would be counted twice).
    """
    from curate.core.safety import UserError

    if len(paths) < 2:
        raise UserError("curate stats merge needs at least two runs (output folders or stats.json files)")
    runs = [load_stats(p) for p in paths]
    seen: dict[str, str] = {}
    for p, r in zip(paths, runs):
        key = r["_file"] if "://" in r["_file"] else os.path.realpath(r["_file"])
        if key in seen:
            raise UserError(f"{p}: the same stats.json as {seen[key]}; each run once")
        seen[key] = p
    first = runs[0]
    names0 = [s["name"] for s in first["stages"]]
    problems = []
    for p, r in zip(paths[1:], runs[1:]):
        names = [s["name"] for s in r["stages"]]
        if r.get("recipe") != first.get("recipe"):
            problems.append(f"{p}: recipe {r.get('recipe')!r}, but {paths[0]}: {first.get('recipe')!r}")
        if names != names0:
            problems.append(f"{p}: stages {' -> '.join(names)}, but {paths[0]}: {' -> '.join(names0)}")
    if problems and not allow_mismatch:
        raise UserError("the runs are not of the same recipe, so their ledgers do not add up stage by stage:\n  "
                        + "\n  ".join(problems) + "\n(--allow-mismatch sums them anyway, stage by stage name)")
    order: list[str] = []
    stages: dict[str, dict] = {}
    for r in runs:
        for s in r["stages"]:
            if s["name"] not in stages:
                order.append(s["name"])
                stages[s["name"]] = {"name": s["name"], "in": 0, "kept": 0, "dropped": {}, "errors": 0, "flagged": {}}
            m = stages[s["name"]]
            for key in _LEDGER:
                m[key] += s.get(key, 0)
            _add(m["dropped"], s.get("dropped"))
            _add(m["flagged"], s.get("flagged"))
    if "write" in order:  # the writer closes the table, as in a run's stats
        order.remove("write")
        order.append("write")
    merged_stages = [stages[n] for n in order]
    info: dict = {}
    errors: dict[tuple, dict] = {}
    for r in runs:
        _add(info, r.get("info"))
        for e in r.get("top_errors") or []:
            g = errors.setdefault((e.get("stage"), e.get("reason")), dict(e, n=0))
            g["n"] += e.get("n", 0)
    problems_after = []
    for s in merged_stages:
        if s["name"] != "write" and s["in"] != s["kept"] + sum(s["dropped"].values()) + s["errors"]:
            problems_after.append(f"stage {s['name']}: in {s['in']} != kept {s['kept']} + dropped "
                                  f"{sum(s['dropped'].values())} + errors {s['errors']}")
    limits = [r.get("limit") for r in runs]
    recipes = sorted({str(r.get("recipe")) for r in runs})
    return {
        "merged_from": [r["_file"] for r in runs],
        "runs": len(runs),
        "recipe": recipes[0] if len(recipes) == 1 else recipes,
        "mismatch_allowed": bool(problems),
        "input": [p for r in runs for p in (r.get("input") or [])],
        "output": [r.get("output") for r in runs],
        "runner": sorted({str(r.get("runner")) for r in runs}),
        "seconds": round(sum(float(r.get("seconds") or 0) for r in runs), 3),
        "limit": limits if any(limits) else None,
        "ledger_ok": all(r.get("ledger_ok", True) for r in runs) and not problems_after,
        "ledger_problems": [f"{r['_file']}: {p}" for r in runs for p in r.get("ledger_problems") or []] + problems_after,
        "documents_in": sum(int(r.get("documents_in") or 0) for r in runs),
        "documents_out": sum(int(r.get("documents_out") or 0) for r in runs),
        "info": dict(sorted(info.items())),
        "top_errors": sorted(errors.values(), key=lambda g: (-g["n"], str(g.get("stage")), str(g.get("reason"))))[:5],
        "failed": [f"{r['_file']}: {f}" for r in runs for f in r.get("failed") or []],
        "stages": merged_stages,
    }


def print_stats(data: dict, console: Console | None = None, title: str = "") -> None:
    """The table of a stats.json (a run's or a merge's): stage, in, kept, dropped, errors, reasons."""
    from rich.text import Text

    console = console or Console()
    t = Table(title=Text(title) if title else None, title_justify="left")
    for col in ("stage", "in", "kept", "dropped", "errors", "reasons"):
        t.add_column(col, justify="right" if col in ("in", "kept", "dropped", "errors") else "left")
    for s in data["stages"]:
        dropped = s.get("dropped") or {}
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(dropped.items(), key=lambda kv: -kv[1]))
        if s.get("flagged"):
            reasons += (" | " if reasons else "") + "flagged: " + ", ".join(f"{k} {v:,}" for k, v in s["flagged"].items())
        t.add_row(Text(s["name"]), f"{s['in']:,}", f"{s['kept']:,}", f"{sum(dropped.values()):,}", f"{s['errors']:,}",
                  Text(reasons))
    console.print(t)
    by_name = {s["name"]: s for s in data["stages"]}
    dropped = sum(sum((s.get("dropped") or {}).values()) for s in data["stages"] if s["name"] != "write")
    errors = sum(s["errors"] for s in data["stages"] if s["name"] != "write")
    written = by_name["write"]["kept"] if "write" in by_name else data.get("documents_out", 0)
    ok = "[green]balanced[/]" if data.get("ledger_ok") else "[red]DOES NOT BALANCE[/]"
    console.print(f"ledger {ok}: {data.get('documents_in', 0):,} in = {written:,} written + {dropped:,} dropped + "
                  f"{errors:,} errors", highlight=False)
    for line in data.get("ledger_problems") or []:
        console.print(Text("  " + line))
    if data.get("limit"):
        console.print(Text(f"limited: --limit {data['limit']} (the runs read only the first documents of their input)"))
    if data.get("mismatch_allowed"):
        console.print(Text(f"note: the runs differ in recipe or stages (--allow-mismatch); recipes: {data['recipe']}"))
    for line in data.get("failed") or []:
        console.print(Text("FAILED " + line), style="red")
