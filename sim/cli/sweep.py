"""Running a scenario's points for ``servesim run``: saved as they finish, resumed, in workers.

Every point (one server at one sweep value) is saved under ``OUT/points/`` when it completes
(:mod:`sim.cli.points`), so rerunning the same command resumes a sweep that died; with
``--jobs N`` points run in worker processes that die with the command (:mod:`sim.cli.workers`);
with ``--scheduler ADDR`` they are tasks on an existing Dask cluster (:mod:`sim.executor`), each
saved here as its result comes back (a run that dies leaves the finished points saved; the
cluster's workers are the cluster's, not the command's, and the scheduler drops the dead
client's queued tasks).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sim.cli.points import load_point, point_key, save_point
from sim.cli.workers import run_in_workers
from sim.executor import Executor
from sim.scenario import Scenario, ScenarioError, with_override

__all__ = ["capped", "point_row", "run_points"]


def point_row(scenario: Scenario, index: int, sweep: dict[str, Any], fast: bool) -> dict[str, Any]:
    """Run one server at one sweep value (in this process or a worker): its result row."""
    from sim.results.bench import DETAIL_KEY, request_detail
    from sim.simulation import run_server

    result = run_server(scenario, index, fast=fast, sweep=sweep)
    detail = request_detail(result.recorder)
    return {**result.row(), "notes": result.notes, **({DETAIL_KEY: detail} if detail is not None else {})}


def _point_row(args: tuple[Scenario, int, dict[str, Any], bool]) -> dict[str, Any]:
    """:func:`point_row` on one tuple (an executor maps one-argument functions)."""
    return point_row(*args)


def capped(scenario: Scenario, requests: int, users: int | None = None) -> Scenario:
    """The scenario with at most ``requests`` requests (and ``users`` closed-loop users) per point."""
    w = scenario.workload
    scenario = with_override(scenario, "workload.num_requests", min(w.num_requests or requests, requests))
    arrival = scenario.workload.arrival
    if getattr(arrival, "kind", None) == "trace":
        scenario = with_override(scenario, "workload.arrival.limit", min(arrival.limit or requests, requests))  # type: ignore[union-attr]
    if users is not None and getattr(arrival, "kind", None) == "closed_loop":
        scenario = with_override(scenario, "workload.arrival.users", min(arrival.users, users))  # type: ignore[union-attr]
    return scenario


def run_points(
    scenario: Scenario, out: Path | None, fast: bool, jobs: int = 1,
    progress: Callable[[int, int, int], None] | None = None, say: Callable[[str], None] | None = None,
    executor: Executor | None = None,
) -> list[dict[str, Any]]:
    """Run every point, saving each as it completes so a stopped sweep resumes where it died.

    Points saved by an earlier run of the same command (same servesim, scenario, files and
    cost profiles) are reused, and ``say`` is told how many; a corrupt saved point is reported
    and recomputed. With ``jobs > 1`` points run in worker processes; every point draws its
    workload from the scenario's seed alone, so the rows are identical whatever the executor and
    the order. With an ``executor`` (e.g. :class:`sim.executor.DaskExecutor`) the points are its
    tasks instead. ``progress(done, total, requests)`` is called as points finish (``requests``:
    requests simulated by the finished points, ``arrived``, reused ones included).
    """
    from sim.simulation import resolve_servers, sweep_scenarios

    points = list(sweep_scenarios(scenario))
    resolved = [resolve_servers(sc) for _, sc in points]  # fail fast on any point before running
    cache = out / "points" if out else None
    if cache:
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ScenarioError(f"--out {out}: cannot create {cache} ({err.strerror or err}); name a folder you can write") from None
    todo: list[tuple[int, tuple[Scenario, int, dict[str, Any], bool], Path | None]] = []
    rows: list[dict[str, Any] | None] = []
    for (sweep, sc), servers in zip(points, resolved, strict=True):
        for i, spec in enumerate(sc.servers):
            saved = cache / f"{point_key(sc, sweep, spec.label, servers[i])}.json" if cache else None
            row, why = load_point(saved) if saved else (None, None)
            if why and say:
                say(f"warning: {saved}: {why}; recomputing this point")
            rows.append(row)
            if row is None:
                todo.append((len(rows) - 1, (sc, i, sweep, fast), saved))
    if say and cache and len(todo) < len(rows):
        say(f"resumed: reused {len(rows) - len(todo)} of {len(rows)} points saved in {cache} "
            "(same servesim, scenario, files and cost profiles)")

    def finish(key: tuple[int, Path | None], row: dict[str, Any]) -> None:
        slot, saved = key
        rows[slot] = row
        if saved:
            try:
                save_point(saved, row)
            except OSError as err:
                raise ScenarioError(f"--out {out}: cannot write {saved} ({err.strerror or err}); free space or "
                                    "name a folder you can write") from None
        report()

    def report() -> None:
        if progress:
            done = [r for r in rows if r is not None]
            progress(len(done), len(rows), sum(int(r.get("arrived", 0)) for r in done))

    report()
    if executor is not None:
        executor.map(_point_row, [args for _, args, _ in todo],
                     done=lambda i, row: finish((todo[i][0], todo[i][2]), row))
    elif jobs <= 1 or len(todo) <= 1:
        for slot, args, saved in todo:
            finish((slot, saved), point_row(*args))
    else:
        run_in_workers(point_row, (((slot, saved), args) for slot, args, saved in todo), jobs, finish)
    return [row for row in rows if row is not None]
