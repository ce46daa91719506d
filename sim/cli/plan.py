"""``servesim plan PLAN.yaml``: the cheapest fleet that meets an SLO, with cost and energy.

Prints one row per candidate and the cheapest plan; with ``--out`` writes ``plan.json`` (every
candidate with its prices' sources, power basis, verdicts and confidence intervals),
``plan.csv`` and ``pareto.png``. ``--jobs N`` runs the simulations on a local Dask cluster of N
workers (127.0.0.1 only); ``--scheduler tcp://HOST:PORT`` on an existing cluster (see
:mod:`sim.executor` for why only a trusted scheduler should be named).
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

__all__ = ["register"]

COLUMNS = [
    ("candidate", "candidate", "{}"), ("status", "status", "{}"), ("replicas", "replicas", "{}"),
    ("gpus_per_replica", "GPUs/replica", "{}"),
    ("max_load_per_replica", "max load/replica", "{:.3g}"), ("usd_per_hour", "$/h", "{:.2f}"),
    ("usd_per_million_output_tokens", "$/1M out tok", "{:.3f}"), ("tokens_per_joule", "tok/J", "{:.2f}"),
    ("headroom", "headroom", "{:.0%}"), ("p99_ttft_ms", "TTFT p99 ms", "{:.0f}"),
    ("p99_tpot_ms", "TPOT p99 ms", "{:.1f}"), ("simulations", "sims", "{}"),
]


def _fmt(value: Any, pattern: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    try:
        return pattern.format(value)
    except (TypeError, ValueError):
        return str(value)


def plan_table(doc: dict[str, Any]) -> Table:
    """The candidates as a rich table."""
    table = Table(title=f"plan {doc['plan']['name']}: target {doc['traffic']['target']:.4g} "
                        f"{'req/s' if doc['traffic']['kind'] == 'rate' else 'users'}; SLO {doc['slo']}")
    for _, head, _ in COLUMNS:
        table.add_column(head, justify="right")
    for row in doc["candidates"]:
        table.add_row(*[_fmt(row.get(key), pat) for key, _, pat in COLUMNS])
    return table


def write_outputs(doc: dict[str, Any], out: Path) -> None:
    """plan.json, plan.csv and pareto.png."""
    from sim.results.pareto import plot_pareto

    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps(doc, indent=2, default=float) + "\n")
    with (out / "plan.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        keys = [k for k, _, _ in COLUMNS] + ["hardware", "engine", "fleet_kw", "reason"]
        writer.writerow(keys)
        for row in doc["candidates"]:
            writer.writerow([row.get(k, "") for k in keys])
    metric = doc["plan"]["search"]["pareto_metric"]
    plot_pareto(doc["candidates"], metric, doc["pareto_front"], doc["cheapest"], out / "pareto.png",
                f"{doc['plan']['name']}: cost vs {metric}")


def register(app: typer.Typer) -> None:
    """Add the ``plan`` command to the app."""

    @app.command("plan")
    def plan_cmd(
        plan_file: Annotated[Path, typer.Argument(help="Plan YAML file.")],
        out: Annotated[Path | None, typer.Option("--out", help="Write plan.json, plan.csv and pareto.png here.")] = None,
        jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Simulations on a local Dask cluster of N workers.")] = 1,
        scheduler: Annotated[str | None, typer.Option("--scheduler", help="Use an existing Dask scheduler (tcp:// or tls://).")] = None,
    ) -> None:
        """Find the cheapest fleet that meets the plan's SLO; print and write the plan."""
        from sim.catalog import CatalogError
        from sim.cli.console import console, err_console
        from sim.cli.console import fail as _fail
        from sim.cli.console import with_file as _with_file
        from sim.executor import make_executor
        from sim.plan import load_plan, plan
        from sim.scenario import ScenarioError

        try:
            spec = load_plan(plan_file)
        except ScenarioError as err:
            _fail(_with_file(plan_file, err))
        started = time.perf_counter()
        try:
            with make_executor(jobs, scheduler) as executor:
                result = plan(spec, executor=executor,
                              progress=lambda msg: err_console.print(f"[dim]{msg}[/dim]", highlight=False))
        except (ScenarioError, CatalogError) as err:
            _fail(_with_file(plan_file, err))
        elapsed = time.perf_counter() - started
        doc = result.to_json()
        doc["elapsed_s"] = elapsed
        console.print(plan_table(doc))
        best = result.cheapest
        console.print(f"replica model: {result.replica_model}", markup=False)
        if best is None:
            console.print("[bold red]no candidate meets the SLO[/]")
        else:
            f = best.figures
            console.print(f"cheapest: [bold]{escape(best.name)}[/] x{f['replicas']} at ${f['usd_per_hour']:.2f}/h "
                          f"(${f['usd_per_million_output_tokens']:.3f} per 1M output tokens, headroom {f['headroom']:.0%}); "
                          f"price: {best.price.get('provider', best.price.get('offering'))} {best.price.get('offering')}")
        console.print(f"Pareto front (cost vs {spec.search.pareto_metric}): {', '.join(doc['pareto_front']) or '-'}", markup=False)
        console.print(f"{result.simulations} simulations in {elapsed:.1f} s")
        if out is not None:
            write_outputs(doc, out)
            console.print(f"wrote {out}/plan.json, plan.csv, pareto.png", markup=False)
