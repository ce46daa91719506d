"""A :class:`~sim.results.timeline.Timeline` as a Chrome trace / Perfetto JSON file.

Open the file at ui.perfetto.dev (or chrome://tracing). The layout, in the Trace Event Format's
terms (JSON object form; ``ts`` and ``dur`` in whole microseconds of simulated time):

* one process per server, named after it (engine, version, weight format);
* in it, thread 0 ``forward passes``: one complete (``X``) slice per pass, named by its phase
  (prefill / decode / mixed), with its sequences, tokens, context, KV use and preemptions as
  args; a preemption is also an instant (``i``) on that thread;
* one thread per request (``request N``): slices ``queued``, ``prefill``, ``decode`` (with the
  tokens sampled), and an instant when it was preempted and when it left (completed, timeout,
  rejected, cancelled);
* counters (``C``) on the server: ``batch size`` (sequences in the pass), ``tokens in flight``
  (tokens the pass computes: prompt-chunk tokens, one per decoding sequence and the speculative
  drafts it verifies), ``KV
  occupancy`` (percent of the server's KV blocks, or slot tokens, held) and ``queue``
  (requests waiting).

Times are rounded to microseconds once, at the boundaries, so slices that touch in the
simulation touch in the file and never overlap on a track.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sim.results.timeline import (
    EVENT_KINDS,
    PASS_PHASES,
    SPAN_KINDS,
    ServerTimeline,
    Timeline,
    record_timelines,
)
from sim.scenario import Scenario, ScenarioError

__all__ = ["trace_document", "write_timelines", "write_trace"]

PASSES_TID = 0


def _us(seconds: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(seconds, dtype=np.float64) * 1e6).astype(np.int64)


def _meta(kind: str, pid: int, tid: int, **args: Any) -> dict[str, Any]:
    return {"name": kind, "ph": "M", "pid": pid, "tid": tid, "args": args}


def _counter(events: list[dict[str, Any]], name: str, key: str, pid: int, times: np.ndarray,
             values: np.ndarray) -> None:
    """Counter samples, only where the value changes."""
    last = None
    for t, v in zip(times.tolist(), values.tolist(), strict=True):
        if v != last:
            events.append({"name": name, "ph": "C", "ts": t, "pid": pid, "args": {key: v}})
            last = v


def _server_events(s: ServerTimeline, pid: int) -> list[dict[str, Any]]:
    events = [_meta("process_name", pid, 0, name=f"{s.server}: {s.label}"),
              _meta("process_sort_index", pid, 0, sort_index=pid),
              _meta("thread_name", pid, PASSES_TID, name="forward passes")]
    p = s.passes
    start, end = _us(p["start_s"]), _us(p["end_s"])
    unit = s.kv_unit
    cols = {k: v.tolist() for k, v in p.items() if k not in ("start_s", "end_s")}
    for i, (ts, te) in enumerate(zip(start.tolist(), end.tolist(), strict=True)):
        args: dict[str, Any] = {
            "sequences": cols["prompt_seqs"][i] + cols["decode_seqs"][i],
            "prompt tokens": cols["prompt_tokens"][i],
            "decode sequences": cols["decode_seqs"][i],
            "context tokens": cols["context_tokens"][i],
            "queue": cols["waiting"][i],
        }
        if cols["draft_tokens"][i]:
            args["draft tokens"] = cols["draft_tokens"][i]
        if unit:
            args[f"KV {unit} used"] = cols["kv_used"][i]
        if cols["preemptions"][i]:
            args["preemptions"] = cols["preemptions"][i]
            events.append({"name": f"preempted {cols['preemptions'][i]}", "ph": "i", "s": "t", "ts": ts,
                           "pid": pid, "tid": PASSES_TID})
        if i in s.chunks:
            args["prompt chunks"] = " ".join(f"r{r}:{c}" for r, c in s.chunks[i])
        events.append({"name": PASS_PHASES[cols["phase"][i]], "cat": "pass", "ph": "X", "ts": ts,
                       "dur": te - ts, "pid": pid, "tid": PASSES_TID, "args": args})
    if s.num_passes:
        # a counter holds its value until the next sample: drop to 0 where the server idles
        idle = np.flatnonzero(start[1:] > end[:-1])
        times = np.concatenate([start, end[idle], end[-1:]])
        order = np.argsort(times, kind="stable")
        batch = np.concatenate([s.batch_size, np.zeros(idle.size + 1, dtype=np.int64)])
        computed = p["prompt_tokens"] + p["decode_seqs"] + p["draft_tokens"]
        tokens = np.concatenate([computed, np.zeros(idle.size + 1, dtype=np.int64)])
        _counter(events, "batch size", "sequences", pid, times[order], batch[order])
        _counter(events, "tokens in flight", "tokens", pid, times[order], tokens[order])
        _counter(events, "queue", "requests", pid, end, p["waiting"])
        if s.kv_capacity:
            _counter(events, "KV occupancy", "percent", pid, end, np.round(100 * s.kv_occupancy, 2))
    events.extend(_request_events(s, pid))
    return events


def _request_events(s: ServerTimeline, pid: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    sp = s.spans
    start, end = _us(sp["start_s"]), _us(sp["end_s"])
    requests, kinds, tokens, slots = (sp[k].tolist() for k in ("request", "kind", "tokens", "slot"))
    for r in sorted(set(requests) | set(s.events["request"].tolist())):
        events.append(_meta("thread_name", pid, r + 1, name=f"request {r}"))
    for i, (ts, te) in enumerate(zip(start.tolist(), end.tolist(), strict=True)):
        kind = SPAN_KINDS[kinds[i]]
        if te == ts and kind == "queued":
            continue  # admitted the moment it arrived
        args: dict[str, Any] = {"request": requests[i]}
        if kind != "queued":
            args["prompt tokens" if kind == "prefill" else "tokens"] = tokens[i]
        if slots[i] >= 0:
            args["slot"] = slots[i]
        events.append({"name": kind, "cat": "request", "ph": "X", "ts": ts, "dur": te - ts, "pid": pid,
                       "tid": requests[i] + 1, "args": args})
    ev = s.events
    for r, k, t in zip(ev["request"].tolist(), ev["kind"].tolist(), _us(ev["time_s"]).tolist(), strict=True):
        events.append({"name": EVENT_KINDS[k], "cat": "request", "ph": "i", "s": "t", "ts": t, "pid": pid,
                       "tid": r + 1})
    return events


def trace_document(timeline: Timeline) -> dict[str, Any]:
    """The trace as a JSON-ready dict (``traceEvents`` plus ``otherData`` describing the run)."""
    events: list[dict[str, Any]] = []
    for pid, server in enumerate(timeline.servers, start=1):
        events.extend(_server_events(server, pid))
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "generator": "servesim",
            "scenario": timeline.scenario,
            "model": timeline.model,
            "hardware": timeline.hardware,
            "sweep": json.dumps(timeline.sweep),
            "servers": "; ".join(f"{s.server}: {s.label}" for s in timeline.servers),
            "time": "simulated; ts and dur in microseconds",
        },
    }


def write_trace(timeline: Timeline, path: str | Path) -> Path:
    """Write the trace JSON to ``path`` (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(trace_document(timeline), separators=(",", ":")))  # (dumps: the C encoder)
    return path


def write_timelines(scenario: Scenario, path: str | Path, plots: bool = True) -> list[Path]:
    """Record a timeline of every sweep point of ``scenario`` (``servesim run --timeline``) and
    write each as a trace, with its four plots beside it (``<stem>_gantt.png``, ...).

    One point writes ``path`` itself; a sweep writes ``<stem>_<field><value>.json`` per point.
    """
    from sim.results.timeline_plots import save_timeline_plots

    path = Path(path)
    _check_path(path)  # before the runs
    timelines = record_timelines(scenario)
    written = []
    for timeline in timelines:
        tag = "_".join(f"{k.split('.')[-1]}{v}" for k, v in timeline.sweep.items())
        target = path if len(timelines) == 1 or not tag else path.with_name(f"{path.stem}_{tag}{path.suffix}")
        try:
            written.append(write_trace(timeline, target))
            if plots:
                written.extend(save_timeline_plots(timeline, target.parent, prefix=f"{target.stem}_"))
        except OSError as err:
            raise ScenarioError(f"--timeline {path}: cannot write {target}: {err.strerror or err}; "
                                "name a .json file in a folder you can write") from None
    return written


def _check_path(path: Path) -> None:
    """Refuse a trace path that is a folder or lies under a file (before anything runs)."""
    if path.is_dir():
        raise ScenarioError(f"--timeline {path}: is a folder; name the trace file, e.g. {path / 'trace.json'}")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ScenarioError(f"--timeline {path}: {parent} is a file, not a folder; name a .json file in a folder")
