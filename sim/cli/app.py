"""The ``servesim`` command: run and check (calibrate and validate are in :mod:`sim.cli.calibrate`).

The CLI package is the only part of ``sim`` that writes result files. Errors in user input print one clear message (file,
field, fix) and exit with status 2; they never show a traceback.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from sim.scenario import Scenario, ScenarioError, load_scenario, parse_value, with_override

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Discrete-event simulator of LLM serving: Ollama, llama.cpp server, vLLM.")
console = Console(width=None if sys.stdout.isatty() else 150)
err_console = Console(stderr=True)

TABLE_COLUMNS = [
    ("server", "server", "{}"),
    ("completed", "done", "{}"),
    ("timeouts", "timeouts", "{}"),
    ("rejected", "rejected", "{}"),
    ("output_throughput", "out tok/s", "{:.1f}"),
    ("request_throughput", "req/s", "{:.2f}"),
    ("median_ttft_ms", "TTFT p50 ms", "{:.0f}"),
    ("p99_ttft_ms", "TTFT p99 ms", "{:.0f}"),
    ("median_tpot_ms", "TPOT p50 ms", "{:.1f}"),
    ("median_e2el_ms", "E2E p50 ms", "{:.0f}"),
    ("p99_e2el_ms", "E2E p99 ms", "{:.0f}"),
]


def _with_file(path: Path, err: Exception) -> str:
    text = str(err)
    return text if text.startswith(str(path)) else f"{path}: {text}"


def _fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def _apply_sets(scenario: Scenario, sets: list[str]) -> Scenario:
    for item in sets:
        if "=" not in item:
            _fail(f"--set {item!r}: write it as path=value, e.g. --set workload.num_requests=500")
        path, value = item.split("=", 1)
        scenario = with_override(scenario, path.strip(), parse_value(value))
    return scenario


def _fmt(value: Any, pattern: str) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "-"
    try:
        return pattern.format(value)
    except (ValueError, TypeError):
        return str(value)


def print_table(scenario: Scenario, rows: list[dict[str, Any]]) -> None:
    """One table for the run: a row per server and sweep value."""
    sweep = scenario.sweep.path if scenario.sweep else None
    table = Table(title=f"{scenario.name} ({scenario.model if isinstance(scenario.model, str) else 'model'} on {scenario.hardware})")
    if sweep:
        table.add_column(sweep.split(".")[-1], justify="right")
    retried = any(row.get("notes", {}).get("retries") for row in rows)  # fleets whose clients retry
    for _, head, _ in TABLE_COLUMNS:
        table.add_column(head, justify="right")
    if retried:
        table.add_column("retries", justify="right")
    for row in rows:
        cells = [str(row["sweep"].get(sweep, "")) for _ in [0] if sweep]
        cells += [_fmt(row.get(key), pat) for key, _, pat in TABLE_COLUMNS]
        if retried:
            cells.append(str(row.get("notes", {}).get("retries", "-")))
        table.add_row(*cells)
    console.print(table)


FLEET_NOTES = ("replicas", "router", "router_decisions", "router_rejected", "attempts", "retries", "shed_429",
               "replica_rows", "prefill_routed", "prefill_busy_s", "decode_busy_s", "local_prefills",
               "prefill_fallbacks", "kv_transferred_gb", "connector")
"""Notes of a fleet point written to its bench JSON under the ``servesim`` key."""


def _vllm_bench_json(scenario: Scenario, row: dict[str, Any]) -> dict[str, Any]:
    """A result in the layout `vllm bench serve --save-result` writes (aggregate keys)."""
    keep = {k: v for k, v in row.items() if k not in ("sweep", "server", "engine")}
    return {
        "date": "simulated",
        "backend": row["engine"],
        "model_id": scenario.model if isinstance(scenario.model, str) else "hf_config",
        "num_prompts": row["arrived"],
        "request_rate": getattr(scenario.workload.arrival, "rate_per_s", "inf"),
        "max_concurrency": getattr(scenario.workload.arrival, "users", None),
        "simulator": "servesim",
        **keep,
    }


def _point_key(scenario: Scenario, sweep: dict[str, Any], server: str, resolved: Any) -> str:
    """Identifies a point: the scenario, the sweep value, and the resolved server (its policy
    and cost parameters), so a recalibrated profile is not served from a stale saved point."""
    text = json.dumps({"scenario": scenario.model_dump(mode="json"), "sweep": sweep, "server": server,
                       "resolved": repr((resolved.policy, resolved.cost, resolved.service))},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _point_row(scenario: Scenario, index: int, sweep: dict[str, Any], fast: bool) -> dict[str, Any]:
    """Run one server at one sweep value (in this process or a worker): its result row."""
    from sim.simulation import run_server

    result = run_server(scenario, index, fast=fast, sweep=sweep)
    return {**result.row(), "notes": result.notes}


def _run_points(scenario: Scenario, out: Path | None, fast: bool, jobs: int = 1) -> list[dict[str, Any]]:
    """Run every point, saving each as it completes so a stopped sweep resumes where it died.

    With ``jobs > 1`` points run in worker processes; every point draws its workload from the
    scenario's seed alone, so the rows are identical whatever the executor and the order.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from sim.simulation import resolve_servers, sweep_scenarios

    points = list(sweep_scenarios(scenario))
    resolved = [resolve_servers(sc) for _, sc in points]  # fail fast on any point before running
    cache = out / "points" if out else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    todo: list[tuple[int, Scenario, int, dict[str, Any], Path | None]] = []
    rows: list[dict[str, Any] | None] = []
    for (sweep, sc), servers in zip(points, resolved, strict=True):
        for i, spec in enumerate(sc.servers):
            saved = cache / f"{_point_key(sc, sweep, spec.label, servers[i])}.json" if cache else None
            rows.append(json.loads(saved.read_text()) if saved and saved.is_file() else None)
            if rows[-1] is None:
                todo.append((len(rows) - 1, sc, i, sweep, saved))

    def finish(slot: int, saved: Path | None, row: dict[str, Any]) -> None:
        rows[slot] = row
        if saved:
            saved.write_text(json.dumps(row, default=float))

    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task("simulating", total=len(rows), completed=len(rows) - len(todo))
        if jobs <= 1:
            for slot, sc, i, sweep, saved in todo:
                finish(slot, saved, _point_row(sc, i, sweep, fast))
                progress.advance(task)
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = {pool.submit(_point_row, sc, i, sweep, fast): (slot, saved)
                           for slot, sc, i, sweep, saved in todo}
                for future in as_completed(futures):
                    finish(*futures[future], future.result())
                    progress.advance(task)
    return [row for row in rows if row is not None]


def _write_outputs(scenario: Scenario, rows: list[dict[str, Any]], out: Path) -> None:
    from sim.results.fleet_plots import save_replica_plot
    from sim.results.plots import save_standard_plots

    out.mkdir(parents=True, exist_ok=True)
    sweep = scenario.sweep.path if scenario.sweep else None
    flat = [{"server": r["server"], "engine": r["engine"], "sweep": r["sweep"],
             **{k: v for k, v in r.items() if k not in ("server", "engine", "sweep", "notes")}} for r in rows]
    doc = {"scenario": scenario.model_dump(mode="json"), "points": flat,
           "notes": {f"{r['server']} {r['sweep']}": r.get("notes", {}) for r in rows}}
    (out / "results.json").write_text(json.dumps(doc, indent=2, default=float) + "\n")
    keys = [k for k in flat[0] if k != "sweep"]
    with (out / "results.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["server", *(["sweep." + sweep] if sweep else []), *keys[1:]])
        for r in flat:
            writer.writerow([r["server"], *([r["sweep"][sweep]] if sweep else []), *(r[k] for k in keys[1:])])
    bench = out / "bench"
    bench.mkdir(exist_ok=True)
    for r, full in zip(flat, rows, strict=True):
        tag = "_".join(f"{k.split('.')[-1]}{v}" for k, v in r["sweep"].items())
        name = f"{r['server']}{'_' + tag if tag else ''}.json".replace("/", "-")
        doc = _vllm_bench_json(scenario, r)
        fleet = {k: v for k, v in full.get("notes", {}).items() if k in FLEET_NOTES}
        if fleet:
            doc["servesim"] = fleet
        (bench / name).write_text(json.dumps(doc, indent=2, default=float) + "\n")
    save_standard_plots(flat, sweep, out, scenario.name, scenario.workload.timeout_s)
    save_replica_plot([(f"{r['server']} {r['sweep'] or ''}".strip(), r.get("notes", {}).get("replica_rows", []))
                       for r in rows], out, scenario.name)


@app.command("run")
def run_cmd(
    scenario_file: Annotated[Path, typer.Argument(help="Scenario YAML/TOML file.")],
    set_: Annotated[list[str], typer.Option("--set", help="Override a field: path=value (repeatable).")] = [],  # noqa: B006
    out: Annotated[Path | None, typer.Option("--out", help="Write results.json/csv, bench JSONs and plots here.")] = None,
    reference: Annotated[bool, typer.Option("--reference", help="Step one pass at a time (no fast-forward).")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Run sweep points in this many processes.")] = 1,
) -> None:
    """Simulate every server of a scenario (and its sweep); print the table; write results."""
    try:
        scenario = _apply_sets(load_scenario(scenario_file), set_)
        rows = _run_points(scenario, out, fast=not reference, jobs=jobs)
    except ScenarioError as err:
        _fail(_with_file(scenario_file, err))
    print_table(scenario, rows)
    if out is not None:
        _write_outputs(scenario, rows, out)
        console.print(f"wrote {out}/results.json, results.csv, bench/*.json and the plots "
                      "output_throughput.png, p99_e2el_ms.png, timeouts.png")


@app.command("check")
def check_cmd(files: Annotated[list[Path], typer.Argument(help="Scenario files or folders.")]) -> None:
    """Validate scenario files without running them (model fit, KV size, every field)."""
    from sim.simulation import resolve_servers, sweep_scenarios

    paths = [p for f in files for p in (sorted(f.rglob("*.y*ml")) if f.is_dir() else [f])]
    failed = 0
    for path in paths:
        try:
            scenario = load_scenario(path)
            for _, sc in sweep_scenarios(scenario):
                resolve_servers(sc)
            console.print(f"[green]ok[/] {path}")
        except ScenarioError as err:
            failed += 1
            err_console.print(f"[bold red]error:[/] {_with_file(path, err)}", highlight=False)
    if failed:
        raise typer.Exit(2)


from sim.cli.calibrate import register as _register_calibration

_register_calibration(app)


def main() -> None:
    """Entry point of the ``servesim`` command."""
    from sim import CORE

    if "changed since" in CORE.reason:  # an edited checkout: say why it runs at half speed
        err_console.print(f"[dim]note: {CORE.reason}[/dim]")
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted; rerun the same command with the same --out to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
