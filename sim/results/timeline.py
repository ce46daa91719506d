"""A timeline of a run: every forward pass of each server, and every request's life in it.

For teaching and debugging small runs (``servesim run --timeline``, :func:`record_timeline`):
how many sequences rode in each pass and how long it took, when a request waited, when the KV
cache filled and a request was preempted. :mod:`sim.results.perfetto` writes it as a Chrome /
Perfetto trace and :mod:`sim.results.timeline_plots` draws it.

The plain loop (:class:`~sim.servers.base.IterationServer`, compiled by mypyc) records none of
this, so a run without a timeline pays nothing for it. A timeline run drives the same scheduler,
cost model, client and recorder through :class:`_RecordingLoop`, a copy of
``IterationServer._loop`` that calls the server's own helpers in the same order and notes each
pass on the side; a fast-forwarded run of decode passes is expanded pass by pass from the same
decode line. The recorder sees exactly the calls of a plain run, so a timeline run's metrics
are bit-identical to the plain run's (``tests/test_timeline_run.py`` holds the copy to that).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from sim.costs import StepCost
from sim.recorder import Recorder
from sim.requests import Phase, Request, Status
from sim.scenario import Scenario, ScenarioError
from sim.servers.base import INF, Client, IterationServer, Step
from sim.servers.paged import PagedScheduler
from sim.servers.request_level import RequestLevelServer
from sim.servers.slots import SlotScheduler
from sim.simulation import PointResult, run_server, scenario_workload, sweep_scenarios

__all__ = [
    "DECODE_PASS",
    "EVENT_KINDS",
    "MAX_PASSES",
    "MAX_REQUESTS",
    "MIXED_PASS",
    "PASS_PHASES",
    "PREFILL_PASS",
    "SPAN_KINDS",
    "ServerTimeline",
    "Timeline",
    "record_server",
    "record_timeline",
    "record_timelines",
]

MAX_REQUESTS = 5_000
"""Requests a server may receive in a timeline run (timelines are for small runs)."""
MAX_PASSES = 1_000_000
"""Forward passes a server may run in a timeline run (a trace of roughly 300 MB: the seed
benchmark at 5 users, 196,387 passes, writes 55 MB)."""

PASS_PHASES = ("prefill", "decode", "mixed")
"""A pass reads prompt chunks only, decodes only, or both (codes 0, 1, 2)."""
PREFILL_PASS, DECODE_PASS, MIXED_PASS = range(3)
SPAN_KINDS = ("queued", "prefill", "decode", "service")
"""Stretches of a request's life (codes 0-3); ``service`` is a whole request of a request-level
server (sampled service times), which has no passes."""
QUEUED, PREFILL, DECODE, SERVICE = range(4)
EVENT_KINDS = ("preempted", "completed", "timeout", "rejected", "cancelled")
"""Instants of a request's life (codes 0-4): preempted, then how it left the server."""
_END_EVENT = {Status.COMPLETED: 1, Status.TIMEOUT: 2, Status.REJECTED: 3, Status.CANCELLED: 4}
_PHASE_SPAN = {Phase.QUEUED: QUEUED, Phase.PREFILL: PREFILL, Phase.DECODE: DECODE}


@dataclass
class ServerTimeline:
    """One server's timeline at one point, with the run's result (its metrics and records).

    ``passes`` columns (one row per forward pass, in time order): ``start_s``, ``end_s``,
    ``phase`` (index into :data:`PASS_PHASES`), ``prompt_tokens`` and ``prompt_seqs`` (prompt
    chunks read), ``decode_seqs`` (sequences given one token), ``context_tokens`` (KV tokens the
    decoders attend), ``draft_tokens`` (speculative drafts verified beside the decode tokens;
    each decoding sequence gains its one token plus the drafts it had accepted), ``kv_used`` (KV
    blocks, or tokens for slot servers, held after the pass),
    ``preemptions`` (requests preempted when the pass was scheduled), ``waiting`` (requests
    arrived and not admitted when it ended; one admitted at that instant is not counted). ``chunks`` maps a pass index to its prompt chunks ``[(request, tokens)]``.

    ``spans`` columns (one row per stretch of a request's life): ``request``, ``kind`` (index
    into :data:`SPAN_KINDS`), ``start_s``, ``end_s``, ``tokens`` (prompt tokens computed in a
    prefill span; tokens sampled in a decode span, the first token being the prefill's),
    ``slot`` (the slot of a slot server, else -1). ``events`` columns: ``request``, ``kind``
    (index into :data:`EVENT_KINDS`), ``time_s``.
    """

    server: str
    engine: str
    label: str
    """Engine, version and weight format, e.g. ``vllm 0.11.0 (V1), awq-int4``."""
    result: PointResult
    passes: dict[str, np.ndarray]
    chunks: dict[int, list[tuple[int, int]]]
    spans: dict[str, np.ndarray]
    events: dict[str, np.ndarray]
    kv_capacity: int
    """KV blocks (paged) or tokens (slot servers) the server holds at most; 0 if not tracked."""
    kv_unit: str
    cost: StepCost | None = field(default=None, repr=False)

    @property
    def num_passes(self) -> int:
        return int(self.passes["start_s"].size)

    @property
    def batch_size(self) -> np.ndarray:
        """Sequences in each pass (prompt chunks plus decoding sequences)."""
        return self.passes["prompt_seqs"] + self.passes["decode_seqs"]

    @property
    def step_s(self) -> np.ndarray:
        """Seconds of each pass."""
        return self.passes["end_s"] - self.passes["start_s"]

    @property
    def decode_only(self) -> np.ndarray:
        """Mask of the passes that only decode (no prompt chunk)."""
        return self.passes["phase"] == DECODE_PASS

    @property
    def queued_s(self) -> np.ndarray:
        """Seconds of each stretch a request spent queued (one per admission or rejection)."""
        queued = self.spans["kind"] == QUEUED
        return self.spans["end_s"][queued] - self.spans["start_s"][queued]

    @property
    def kv_occupancy(self) -> np.ndarray:
        """Fraction of the KV capacity held after each pass (NaN when not tracked)."""
        if not self.kv_capacity:
            return np.full(self.num_passes, np.nan)
        return self.passes["kv_used"] / self.kv_capacity


@dataclass
class Timeline:
    """Every server of a scenario at one sweep point, on the same arrivals."""

    scenario: str
    model: str
    hardware: str
    sweep: dict[str, Any]
    servers: list[ServerTimeline]
    workload: str = ""
    """The arrivals in a few words, e.g. ``20 closed-loop users``."""

    def server(self, name: str) -> ServerTimeline:
        """The timeline of the server named ``name``."""
        for s in self.servers:
            if s.server == name:
                return s
        raise KeyError(f"no server {name!r}; the servers are {[s.server for s in self.servers]}")

    @property
    def title(self) -> str:
        """``model on hardware`` and the sweep value, for figure titles."""
        point = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in self.sweep.items()
                          if not k.startswith("workload.arrival."))  # (the arrivals say those)
        return ", ".join(x for x in (f"{self.model} on {self.hardware}", self.workload, point) if x)


class _Builder:
    """Collects a server's passes and request lives as plain lists (numpy at the end)."""

    PASS_COLUMNS = ("start_s", "end_s", "phase", "prompt_tokens", "prompt_seqs", "decode_seqs",
                    "context_tokens", "draft_tokens", "kv_used", "preemptions")

    def __init__(self, label: str) -> None:
        self.label = label
        self.passes: dict[str, list[float]] = {c: [] for c in self.PASS_COLUMNS}
        self.chunks: dict[int, list[tuple[int, int]]] = {}
        self.spans: dict[str, list[float]] = {c: [] for c in ("request", "kind", "start_s", "end_s", "tokens", "slot")}
        self.events: dict[str, list[float]] = {c: [] for c in ("request", "kind", "time_s")}
        self.open: dict[int, list[Any]] = {}  # id -> [request, span kind, since, tokens at open, prompt tokens]
        self.num_passes = 0

    # passes ------------------------------------------------------------------------------------
    def add_pass(self, start: float, end: float, phase: int, prompt_tokens: int, prompt_seqs: int,
                 decode_seqs: int, context: int, drafts: int, kv_used: int, preemptions: int) -> None:
        p = self.passes
        for name, value in zip(self.PASS_COLUMNS, (start, end, phase, prompt_tokens, prompt_seqs, decode_seqs,
                                                   context, drafts, kv_used, preemptions), strict=True):
            p[name].append(value)
        self.num_passes += 1
        if self.num_passes > MAX_PASSES:
            raise ScenarioError(
                f"timeline of server {self.label!r}: more than {MAX_PASSES:,} forward passes; timelines are "
                "for small runs: lower workload.num_requests (e.g. --set workload.num_requests=200)"
            )

    # request lives -----------------------------------------------------------------------------
    def arrive(self, request: Request) -> None:
        self.open[request.id] = [request, QUEUED, request.arrival_s, 0, 0]

    def _close(self, entry: list[Any], t: float, generated: int) -> None:
        request, kind, since, at_open, prompt = entry
        tokens = prompt if kind == PREFILL else generated - at_open if kind == DECODE else 0
        s = self.spans
        for name, value in (("request", request.id), ("kind", kind), ("start_s", since), ("end_s", t),
                            ("tokens", tokens), ("slot", request.slot if kind != QUEUED else -1)):
            s[name].append(value)

    def _event(self, request: Request, kind: int, t: float) -> None:
        self.events["request"].append(request.id)
        self.events["kind"].append(kind)
        self.events["time_s"].append(t)

    def finished(self, request: Request, t: float, status: Status) -> None:
        entry = self.open.pop(request.id, None)
        if entry is not None:
            self._close(entry, t, request.generated)  # (a member's count is brought up to date on removal)
        self._event(request, _END_EVENT[status], t)

    def sync(self, requests: Any, t: float) -> None:
        """Note the phase changes of ``requests`` (open entries) that happened at ``t``."""
        for entry in requests:
            request = entry[0]
            kind = _PHASE_SPAN.get(request.phase)
            if kind is None or kind == entry[1]:
                continue
            self._close(entry, t, request.generated)  # (brought up to date when it left the decode set)
            if kind == QUEUED:  # back in the queue: preempted (its KV freed, to be recomputed)
                self._event(request, 0, t)
            entry[1:] = [kind, t, request.generated, 0]

    def add_chunks(self, pass_index: int, chunks: list[tuple[Request, int]]) -> None:
        self.chunks[pass_index] = [(r.id, c) for r, c in chunks]
        for request, chunk in chunks:
            entry = self.open.get(request.id)
            if entry is not None and entry[1] == PREFILL:
                entry[4] += chunk

    def columns(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
        ints = {"phase", "prompt_tokens", "prompt_seqs", "decode_seqs", "context_tokens", "draft_tokens", "kv_used",
                "preemptions", "waiting", "request", "kind", "tokens", "slot"}

        def arrays(cols: dict[str, list[float]]) -> dict[str, np.ndarray]:
            return {k: np.asarray(v, dtype=np.int64 if k in ints else np.float64) for k, v in cols.items()}

        passes, spans = arrays(self.passes), arrays(self.spans)
        # requests that had arrived and were not yet admitted when each pass ended (from the
        # lives, so the count does not depend on when the loop picked the arrivals up)
        queued = spans["kind"] == QUEUED
        arrived = np.sort(spans["start_s"][queued])
        admitted = np.sort(spans["end_s"][queued])
        end = passes["end_s"]
        passes["waiting"] = np.searchsorted(arrived, end, "right") - np.searchsorted(admitted, end, "right")
        return passes, spans, arrays(self.events)


def _kv_probe(scheduler: Any) -> tuple[int, str]:
    if isinstance(scheduler, PagedScheduler):
        return scheduler.policy.num_blocks, "blocks"
    if isinstance(scheduler, SlotScheduler):
        p = scheduler.policy
        return p.slot_context_tokens * (1 if p.unified else p.num_slots), "tokens"
    return 0, ""


def _kv_used(scheduler: Any) -> int:
    """KV blocks (paged) or tokens (slots) held now."""
    if isinstance(scheduler, PagedScheduler):
        return scheduler.pool.num_blocks - scheduler.pool.num_free
    d = scheduler.decode
    return d.context_tokens - d.num_seqs + sum(r.computed for r in scheduler.prompting)


class _RecordingLoop:
    """Runs an :class:`IterationServer` exactly as its own loop does, noting every pass.

    :meth:`_loop` is ``IterationServer._loop`` line for line (the same helpers, in the same
    order, on the same recorder); the lines marked ``# timeline`` are the only additions
    (``tests/test_timeline_run.py`` compares the two sources, so an edit to one fails until the
    other follows).
    """

    def __init__(self, server: IterationServer, builder: _Builder) -> None:
        self.server = server
        self.b = builder
        self.paged = isinstance(server.scheduler, PagedScheduler)

    def start(self, env: simpy.Environment, client: Client, recorder: Recorder) -> simpy.Process:
        b = self.b

        def on_finish(request: Request, now: float, status: Status) -> None:
            recorder.finish(request, now, status)
            client.on_done(request, now)
            b.finished(request, now, status)  # timeline

        self.server.scheduler.bind(on_finish, lambda gap_s: recorder.itl(gap_s, 0.0, 1, 1))
        return env.process(self._loop(env, client, recorder))

    def _preemptions(self) -> int:
        scheduler = self.server.scheduler
        return scheduler.num_preemptions if isinstance(scheduler, PagedScheduler) else 0

    def _loop(self, env: simpy.Environment, client: Client, recorder: Recorder) -> Generator[simpy.Event, Any, None]:
        server, b = self.server, self.b  # timeline
        scheduler, cost, fast = server.scheduler, server.cost, server.fast
        decode = scheduler.decode
        deadlines: list[tuple[float, int, Request]] = []
        last_decode_end = now = env.now
        while True:
            if deadlines and deadlines[0][0] <= now:
                server._expire(deadlines, now)
            if client.next_arrival_s() <= now:
                arrivals = client.pop_arrivals(now)  # timeline (the plain loop hands them straight on)
                for request in arrivals:  # timeline
                    b.arrive(request)  # timeline
                server._admit(arrivals, deadlines, recorder, now)
            waiting, preempted = scheduler.num_waiting, self._preemptions()  # timeline
            step = scheduler.schedule(now)
            preempted = self._preemptions() - preempted  # timeline
            if preempted or scheduler.num_waiting != waiting:  # timeline: admissions, preemptions
                b.sync(list(b.open.values()), now)  # timeline
            if step is None:
                wake = min(client.next_arrival_s(), server._next_deadline(deadlines), scheduler.wake_at())
                if server.wakeable:
                    kicked = server._kicked = env.event()
                    yield kicked if wake == INF else env.any_of([kicked, env.timeout(max(wake - env.now, 0.0))])
                    server._kicked = None
                    now = env.now
                    continue
                if wake == INF:
                    return
                yield env.timeout(max(wake - env.now, 0.0))
                now = env.now
                continue
            if fast and step.plain:
                d, context = step.num_decode_seqs, step.context_tokens
                while True:
                    if now >= server._factor_until:
                        server._pace(now)
                    line = server._line(d)
                    passes, duration = server._plain_run(line, d, context, client, deadlines, now)
                    end = now + duration
                    if env.peek() < end:
                        yield env.timeout(end - env.now)
                    recorder.now = end
                    recorder.num_passes += passes
                    recorder.busy_s += duration
                    server._record_run(line, d, context, passes, now, last_decode_end, recorder)
                    self._decode_run(line, d, context, passes, now, end, preempted)  # timeline
                    preempted = 0  # timeline
                    scheduler.joined.clear()
                    scheduler.advance(passes, end)
                    b.passes["kv_used"][-1] = _kv_used(scheduler)  # timeline: after members left
                    last_decode_end = now = end
                    if (client.next_arrival_s() <= now or (deadlines and deadlines[0][0] <= now)
                            or not decode.num_seqs or not scheduler.continue_decoding()):
                        break
                    d, context = decode.num_seqs, decode.context_tokens
                continue
            d = step.num_decode_seqs
            if now >= server._factor_until:
                server._pace(now)
            duration = server._line(d).at(step.context_tokens) if step.plain else cost.step_time(step.shape()) * server._factor
            end = now + duration
            if env.peek() < end:
                yield env.timeout(end - env.now)
            recorder.now = end
            recorder.num_passes += 1
            recorder.busy_s += duration
            if step.decode:
                if d:
                    server._record_pass(d, end, last_decode_end, recorder)
                    last_decode_end = end
                scheduler.joined.clear()
            if step.chunks:  # timeline (before complete: the chunks' requests may finish in it)
                b.add_chunks(b.num_passes, step.chunks)  # timeline
            scheduler.complete(step, end)
            self._single_pass(step, now, end, preempted)  # timeline
            now = end

    def _single_pass(self, step: Step, start: float, end: float, preempted: int) -> None:
        scheduler, b = self.server.scheduler, self.b
        d = step.num_decode_seqs if step.decode else 0
        prompt = sum(c for _, c in step.chunks)
        phase = DECODE_PASS if not step.chunks else MIXED_PASS if d else PREFILL_PASS
        drafts = step.drafts.tokens if step.drafts is not None else 0  # (speculative decoding)
        b.add_pass(start, end, phase, prompt, len(step.chunks), d, step.context_tokens if d else 0, drafts,
                   _kv_used(scheduler), preempted)
        if step.chunks:
            b.sync([b.open[r.id] for r, _ in step.chunks if r.id in b.open], end)

    def _decode_run(self, line: Any, d: int, context: int, passes: int, start: float, end: float,
                    preempted: int) -> None:
        """The ``passes`` passes of a fast-forwarded run, one by one (before the scheduler
        applies them): each lasts ``line.at`` of its context; the last ends at the run's end."""
        scheduler, b = self.server.scheduler, self.b
        used = _kv_used(scheduler)
        decode = scheduler.decode
        t = start
        for j in range(passes):
            stop = end if j == passes - 1 else min(end, t + line.at(context + d * j))
            if self.paged:  # blocks of passes 1..j were taken at the start of each
                kv = used + (decode.new_blocks(j + 1, first=1) if j else 0)
            else:  # every member stores one more token per pass
                kv = used + d * (j + 1)
            b.add_pass(t, stop, DECODE_PASS, 0, 0, d, context + d * j, 0, kv, preempted if j == 0 else 0)
            t = stop


def _label(scenario: Scenario, index: int, result: PointResult) -> str:
    spec = scenario.servers[index]
    version = getattr(spec, "version", None)
    engine = result.engine + (f" {version}" if version else "")
    if "engine_version" in result.notes:
        engine += f" ({result.notes['engine_version']})"
    fmt = result.notes.get("weight_format")
    return engine + (f", {fmt}" if fmt else "")


def _request_level(builder: _Builder, recorder: Recorder) -> None:
    """Lives of a request-level server's requests, from its records (it has no passes)."""
    for i in range(recorder.num_arrived):
        arrival, started, finish = (float(recorder.arrival_s[i]), float(recorder.started_s[i]),
                                    float(recorder.finish_s[i]))
        request = Request(i, arrival, int(recorder.prompt_tokens[i]), int(recorder.output_tokens[i]))
        served = not np.isnan(started)
        entry = [request, QUEUED, arrival, 0, 0]
        builder._close(entry, started if served else finish, 0)
        if served:
            request.generated = int(recorder.generated[i])
            builder._close([request, SERVICE, started, 0, 0], finish, 0)
            builder.spans["tokens"][-1] = request.generated
        builder._event(request, _END_EVENT[Status(int(recorder.status[i]))], finish)


def record_server(
    scenario: Scenario, index: int = 0, *, workload: Any = None, sweep: dict[str, Any] | None = None,
    fast: bool = True,
) -> ServerTimeline:
    """Run server ``index`` of the scenario and record its timeline (``fast``: with the exact
    fast-forward, whose runs of decode passes are expanded; else one pass at a time)."""
    workload = workload if workload is not None else scenario_workload(scenario)
    if len(workload) > MAX_REQUESTS:
        raise ScenarioError(
            f"timeline: {len(workload):,} requests in one run; timelines are for small runs (at most "
            f"{MAX_REQUESTS:,} requests a server): lower workload.num_requests or workload.duration_s "
            "(e.g. --set workload.num_requests=200)"
        )
    spec = scenario.servers[index]
    builder = _Builder(spec.label)
    probe: list[Any] = []

    def start(server: Any, env: simpy.Environment, client: Client, recorder: Recorder) -> None:
        probe.append(server)
        if isinstance(server, RequestLevelServer):
            server.start(env, client, recorder)
        else:
            _RecordingLoop(server, builder).start(env, client, recorder)

    result = run_server(scenario, index, fast=fast, workload=workload, sweep=sweep, start=start)
    server = probe[0]
    capacity, unit, cost = 0, "", None
    if isinstance(server, RequestLevelServer):
        _request_level(builder, result.recorder)
    else:
        capacity, unit = _kv_probe(server.scheduler)
        cost = server.cost
    passes, spans, events = builder.columns()
    return ServerTimeline(spec.label, result.engine, _label(scenario, index, result), result, passes,
                          builder.chunks, spans, events, capacity, unit, cost)


def record_timeline(
    scenario: Scenario, *, sweep: dict[str, Any] | None = None, servers: list[str] | None = None,
) -> Timeline:
    """Every server of ``scenario`` (or those named in ``servers``) on the same arrivals, each
    with its timeline.

    The scenario's own values are used: a sweep is ignored here (see :func:`record_timelines`).
    """
    names = [spec.label for spec in scenario.servers]
    unknown = sorted(set(servers or ()) - set(names))
    if unknown:
        raise ScenarioError(f"timeline: no server named {unknown[0]!r}; the servers are {names}")
    workload = scenario_workload(scenario)
    chosen = [i for i, name in enumerate(names) if servers is None or name in servers]
    timelines = [record_server(scenario, i, workload=workload, sweep=sweep) for i in chosen]
    model = scenario.model if isinstance(scenario.model, str) else scenario.model.id or "model"
    hardware = scenario.hardware if isinstance(scenario.hardware, str) else "hardware"
    return Timeline(scenario.name, str(model), str(hardware), sweep or {}, timelines, _arrivals(scenario))


def _arrivals(scenario: Scenario) -> str:
    arrival = scenario.workload.arrival
    users, rate = getattr(arrival, "users", None), getattr(arrival, "rate_per_s", None)
    if users is not None:
        return f"{users} closed-loop users"
    return f"{arrival.kind} arrivals" + (f" at {rate:g}/s" if rate is not None else "")


def record_timelines(scenario: Scenario) -> list[Timeline]:
    """A :class:`Timeline` for each point of the scenario's sweep (one if it has none)."""
    return [record_timeline(sc, sweep=point) for point, sc in sweep_scenarios(scenario)]
