"""The ``servesim`` command: run and check (calibrate and validate are in :mod:`sim.cli.calibrate`).

The CLI package is the only part of ``sim`` that writes result files. Errors in user input print one clear message (file,
field, fix) and exit with status 2; they never show a traceback.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import Progress, TextColumn
from rich.table import Table

from sim.cli.console import console, err_console
from sim.cli.console import fail as _fail
from sim.cli.console import with_file as _with_file
from sim.scenario import Scenario, ScenarioError, load_scenario, parse_value, with_override

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Discrete-event simulator of LLM serving: Ollama, llama.cpp server, vLLM.")


def _apply_sets(scenario: Scenario, sets: list[str]) -> Scenario:
    for item in sets:
        if "=" not in item:
            _fail(f"--set {item!r}: write it as path=value, e.g. --set workload.num_requests=500")
        path, value = item.split("=", 1)
        scenario = with_override(scenario, path.strip(), parse_value(value))
    return scenario


def _sweep_fields(scenario: Scenario) -> list[str]:
    """The swept fields, in order: one for a one-field sweep, several for a grid, none without."""
    return list(scenario.sweep.points()[0]) if scenario.sweep else []


def print_table(scenario: Scenario, rows: list[dict[str, Any]]) -> None:
    """One table for the run (a row per server and sweep value), then a warning line for every
    point too failed or too small to read (:mod:`sim.results.table`)."""
    from sim.results.table import CAPTION, point_warnings, table_rows

    sweep = _sweep_fields(scenario)
    table = Table(title=f"{scenario.name} ({scenario.model if isinstance(scenario.model, str) else 'model'} on {scenario.hardware})",
                  caption=CAPTION)
    headers, cells = table_rows(rows, sweep)
    for head in headers:
        table.add_column(head, justify="right")
    for line in cells:
        table.add_row(*line)
    console.print(table)
    for warning in point_warnings(rows, sweep):
        console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)


def _write_outputs(scenario: Scenario, rows: list[dict[str, Any]], out: Path) -> None:
    import datetime as dt

    from sim.results.bench import DETAIL_KEY, bench_name, point_bench
    from sim.results.fleet_plots import save_replica_plot
    from sim.results.plots import run_title, save_standard_plots

    out.mkdir(parents=True, exist_ok=True)
    sweep = _sweep_fields(scenario)
    skip = ("server", "engine", "sweep", "notes", DETAIL_KEY)
    flat = [{"server": r["server"], "engine": r["engine"], "sweep": r["sweep"],
             **{k: v for k, v in r.items() if k not in skip}} for r in rows]
    doc = {"scenario": scenario.model_dump(mode="json"), "points": flat,
           "notes": {f"{r['server']} {r['sweep']}": r.get("notes", {}) for r in rows}}
    (out / "results.json").write_text(json.dumps(doc, indent=2, default=float) + "\n")
    keys = list(dict.fromkeys(k for r in flat for k in r if k != "sweep"))
    with (out / "results.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["server", *("sweep." + f for f in sweep), *keys[1:]])
        for r in flat:
            writer.writerow([r["server"], *(r["sweep"][f] for f in sweep), *(r.get(k) for k in keys[1:])])
    bench = out / "bench"
    bench.mkdir(exist_ok=True)
    date = dt.datetime.now().astimezone()
    for r in rows:
        point = scenario
        for path, value in r["sweep"].items():
            point = with_override(point, path, value)
        (bench / bench_name(r)).write_text(json.dumps(point_bench(point, r, date)) + "\n")
    save_standard_plots(flat, sweep[0] if sweep else None, out, run_title(scenario), scenario.workload.timeout_s)
    save_replica_plot([(f"{r['server']} {r['sweep'] or ''}".strip(), r.get("notes", {}).get("replica_rows", []))
                       for r in rows], out, scenario.name)


def _check_out(out: Path | None) -> None:
    """Refuse an --out that cannot be a results folder before anything runs."""
    if out is None:
        return
    if out.exists() and not out.is_dir():
        _fail(f"--out {out}: is a file, not a folder; name a folder for the results (it is created if missing)")
    parent = next((p for p in out.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        _fail(f"--out {out}: {parent} is a file, not a folder; name a folder whose parents are folders")


def _dask(scheduler: str) -> Any:
    """A Dask executor on the named scheduler, or a clean error."""
    try:
        from sim.executor import DaskExecutor

        return DaskExecutor(scheduler=scheduler, timeout_s=10.0)
    except ImportError:
        _fail("--scheduler needs dask.distributed: pip install 'servesim[dask]'")
    except (OSError, TimeoutError, ValueError) as err:
        _fail(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({err}); start one "
              "(dask scheduler; dask worker ADDR) or run without --scheduler")


def _say(text: str) -> None:
    err_console.print(text, highlight=False, markup=False)


def profile_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per server: the cost profile that priced its passes, its kind and why, its front end
    and its machine's speed noise."""
    seen: dict[tuple[str, str], str] = {}
    for row in rows:
        notes = row.get("notes") or {}
        profile = str(notes.get("cost_profile", "-"))
        key = (str(row["server"]), profile)
        if key not in seen:
            line = f"  {row['server']}: {profile} ({notes.get('cost_profile_kind', '?')}: {notes.get('cost_profile_reason', '?')})"
            if "frontend" in notes:
                line += f"; front end: {notes['frontend']}"
            if "speed_noise" in notes:  # the machine's speed noise (sim/noise.py)
                line += f"; speed noise: {notes['speed_noise']}"
            if "split" in notes:  # a GPU/CPU split, as `ollama ps` prints it
                line += (f"; split {notes['split']} ({notes.get('offloaded')} on the GPU, output layer on the "
                         f"{notes.get('output_layer')}, CPU layers on {notes.get('host')}: {notes.get('split_reason')})")
            seen[key] = line
    return list(seen.values())


def model_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Per model of a multi-model server (sim.multimodel): requests, tok/s, loads, evictions, time loading, p99s."""
    lines = []
    for row in rows:
        models = (row.get("notes") or {}).get("models")
        if not models:
            continue
        point = " ".join(f"{k}={v}" for k, v in row["sweep"].items())
        shared = row["notes"].get("gpu_shared_s")
        share = f"; GPU time-shared by 2+ models for {shared:.0f} s" if shared else ""
        lines.append(f"models of {row['server']} {point} ({row['notes'].get('load')}{share}):")
        for name, m in models.items():
            lines.append(
                f"  {name}: {m['requests']} requests, {m['output_throughput']:.1f} out tok/s, {m['loads']} loads "
                f"({m.get('warm_loads', 0)} from the page cache; {m['load_s_each']:.1f} s each on average, {m['load_time_s']:.0f} s loading), {m['evictions']} evictions, "
                f"{m['expiries']} keep_alive expiries, {100 * m['waited_for_load']:.0f}% waited for a load; "
                f"TTFT p99 {m['ttft_p99_ms']:.0f} ms, E2E p99 {m['e2el_p99_ms']:.0f} ms; {m.get('split', '100% GPU')}"
            )
    return lines


@app.command("run")
def run_cmd(
    scenario_file: Annotated[Path, typer.Argument(help="Scenario YAML/TOML file.")],
    set_: Annotated[list[str], typer.Option("--set", help="Override a field: path=value (repeatable).")] = [],  # noqa: B006
    out: Annotated[Path | None, typer.Option("--out", help="Write results.json/csv, bench JSONs and plots here.")] = None,
    reference: Annotated[bool, typer.Option("--reference", help="Step one pass at a time (no fast-forward).")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Run sweep points in this many processes.")] = 1,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="Run sweep points on an existing Dask cluster (tcp://HOST:PORT; trusted clusters only).")] = None,
    timeline: Annotated[Path | None, typer.Option(
        "--timeline", help="Also write a timeline of every pass and request as a Perfetto / Chrome trace "
        "(this .json path; one per sweep value) with its plots beside it. For small runs.")] = None,
) -> None:
    """Simulate every server of a scenario (and its sweep); print the table; write results."""
    from contextlib import nullcontext

    from sim.cli.sweep import run_points

    _check_out(out)
    try:
        scenario = _apply_sets(load_scenario(scenario_file), set_)
        if timeline is not None:  # first: a run too large for a timeline fails before the long part
            from sim.results.perfetto import write_timelines

            written = write_timelines(scenario, timeline)
            err_console.print(f"wrote {', '.join(map(str, written))} (open the .json at ui.perfetto.dev)", markup=False)
        with _dask(scheduler) if scheduler else nullcontext() as executor, \
                Progress(*Progress.get_default_columns(), TextColumn("{task.fields[what]}"),
                         console=err_console, transient=True) as progress:
            task = progress.add_task("simulating", total=None, what="")

            def advance(done: int, total: int, requests: int) -> None:
                progress.update(task, completed=done, total=total,
                                what=f"{done}/{total} points, {requests:,} requests simulated")

            rows = run_points(scenario, out, fast=not reference, jobs=jobs, progress=advance, say=_say,
                              executor=executor)
    except ScenarioError as err:
        _fail(_with_file(scenario_file, err))
    print_table(scenario, rows)
    console.print("cost profiles (what priced each server's passes, and why):", highlight=False)
    for line in profile_lines(rows) + model_lines(rows):  # text from the data: no rich markup
        console.print(line, highlight=False, markup=False)
    if out is not None:
        try:
            _write_outputs(scenario, rows, out)
        except OSError as err:
            _fail(f"--out {out}: cannot write the results ({err.strerror or err}); name a folder you can write")
        console.print(f"wrote {out}/results.json, results.csv, bench/*.json and the plots "
                      "output_throughput.png, p99_ttft_ms.png, p99_e2el_ms.png, timeouts.png", markup=False)


@app.command("check")
def check_cmd(
    files: Annotated[list[Path], typer.Argument(help="Scenario files or folders (*.yaml, *.yml, *.toml in them).")],
    full: Annotated[bool, typer.Option("--full", help="Parse every row of big trace and length files (default: their first 8 MiB).")] = False,
) -> None:
    """Check scenarios as run would, without simulating: every field, the engines' start-up
    rules, memory, the run's size, and the trace and length files it reads."""
    from sim.cli.check import check_scenario_file, scenario_paths

    try:
        paths = scenario_paths(files)
    except ScenarioError as err:
        _fail(str(err))
    failed = 0
    for path in paths:
        try:
            check_scenario_file(path, full)
            console.print(f"[green]ok[/] {escape(str(path))}")
        except ScenarioError as err:
            failed += 1
            err_console.print(f"[bold red]error:[/] {escape(_with_file(path, err))}", highlight=False)
    if failed:
        raise typer.Exit(2)


from sim.cli.calibrate import register as _register_calibration

_register_calibration(app)


def main() -> None:
    """Entry point of the ``servesim`` command."""
    from sim import CORE

    if "changed since" in CORE.reason:  # an edited checkout: say why it runs at half speed
        err_console.print(f"[dim]note: {CORE.reason}[/dim]")
    from sim.cli.workers import Terminated

    try:
        app()
    except KeyboardInterrupt as err:
        err_console.print("interrupted; rerun the same command with the same --out to resume")
        sys.exit(143 if isinstance(err, Terminated) else 130)


if __name__ == "__main__":
    main()
