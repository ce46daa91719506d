"""The one iteration loop that every architecture shares, and the scheduler base it drives.

A scheduler decides a :class:`Step` (a value) without knowing the clock; the loop asks the cost
model how long the step takes and advances SimPy time. Stretches of pure decode passes with no
event in between are fast-forwarded in one jump whose duration is summed in closed form; an
arrival or timeout that lands inside such a stretch is picked up at the pass boundary where
stepping one pass at a time would pick it up (``fast=False`` steps one pass at a time).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import simpy

from sim.costs import DecodeLine, StepCost
from sim.noise import SpeedProcess
from sim.recorder import Recorder
from sim.requests import Phase, Request, Status
from sim.servers.decode_set import DecodeSet
from sim.shapes import BatchShape

__all__ = ["Client", "DraftPass", "IterationServer", "Scheduler", "Step"]

INF = float("inf")
FinishHook = Callable[[Request, float, Status], None]


@dataclass(slots=True)
class DraftPass:
    """The drafts a speculating server verifies in a pass (see :mod:`sim.servers.speculative`)."""

    members: list[tuple[Request, int]]
    """Decoding sequences and the draft tokens each verifies (0: none this step)."""
    tokens: int
    pairs: float
    seqs: int
    depth: int
    context: int


@dataclass(slots=True)
class Step:
    """One forward pass: explicit prompt chunks, plus (implicitly) the whole decode set."""

    chunks: list[tuple[Request, int]] = field(default_factory=list)
    decode: bool = True
    """Whether the decode set takes part (vLLM V0's prefill passes leave it waiting)."""
    num_decode_seqs: int = 0
    context_tokens: int = 0
    drafts: DraftPass | None = None
    """Speculative decoding: draft tokens verified with the decode set (None: not speculating)."""

    @property
    def plain(self) -> bool:
        """A pass of decode tokens only, which can be repeated without a decision."""
        return not self.chunks and self.decode and self.num_decode_seqs > 0 and self.drafts is None

    def shape(self) -> BatchShape:
        """What the accelerator sees in this pass."""
        tokens = seqs = past = 0
        pairs = 0.0
        for request, chunk in self.chunks:
            done = request.computed
            tokens += chunk
            seqs += 1
            past += done
            pairs += chunk * (done + (chunk + 1) / 2)
        drafts = self.drafts
        if drafts is None:
            return BatchShape(tokens, seqs, past, pairs, self.num_decode_seqs, self.context_tokens)
        return BatchShape(tokens, seqs, past, pairs, self.num_decode_seqs, self.context_tokens,
                          drafts.tokens, drafts.pairs, drafts.seqs, drafts.depth, drafts.context)


class Client(Protocol):
    """Where requests come from: an open-loop arrival list or closed-loop users."""

    def next_arrival_s(self) -> float:
        """Time of the next arrival not yet handed over (inf when none is pending)."""
        ...

    def pop_arrivals(self, now: float) -> list[Request]:
        """Requests arriving at or before ``now``, in arrival order."""
        ...

    def on_done(self, request: Request, now: float) -> None:
        """The client saw its request end (closed-loop users issue their next one)."""
        ...


class Scheduler:
    """Iteration-level policy over a waiting queue and a :class:`DecodeSet`; no clock inside.

    Subclasses implement :meth:`schedule`, and the hooks :meth:`_join`, :meth:`_due`,
    :meth:`_release`; the base class applies finished passes.
    """

    def __init__(self, block_size: int = 1) -> None:
        self.decode = DecodeSet(block_size)
        self.waiting: deque[Request] = deque()
        self.num_waiting = 0
        self.joined: list[Request] = []
        self.last_decode_end = 0.0
        """When the decode set last produced tokens (its members' last token time)."""
        self._finish: FinishHook = lambda request, now, status: None
        self._gap: Callable[[float], None] = lambda gap_s: None

    def bind(self, on_finish: FinishHook, on_gap: Callable[[float], None]) -> None:
        """Set the callbacks told about requests that leave, and about lone inter-token gaps."""
        self._finish = on_finish
        self._gap = on_gap

    # arrivals and cancellations ---------------------------------------------------------------
    def add(self, request: Request, now: float) -> None:
        """Queue an arriving request (considered at the next :meth:`schedule`)."""
        self.waiting.append(request)
        self.num_waiting += 1

    def cancel(self, request: Request, now: float, status: Status) -> None:
        """The client went away (or the engine gave up): free everything the request holds."""
        if request.phase == Phase.QUEUED:
            self.num_waiting -= 1  # stays in the deque as a tombstone, skipped when popped
        else:
            self._release(request)
        self.end(request, now, status)

    def end(self, request: Request, now: float, status: Status) -> None:
        """Mark a request gone and report it."""
        request.phase = Phase.GONE
        self._finish(request, now, status)

    def pop_waiting(self) -> Request | None:
        """Head of the waiting queue, skipping cancelled tombstones."""
        waiting = self.waiting
        while waiting:
            head = waiting[0]
            if head.phase == Phase.QUEUED:
                return head
            waiting.popleft()
        return None

    # the decision -----------------------------------------------------------------------------
    def schedule(self, now: float) -> Step | None:
        """Choose the next pass, or None when there is nothing to run."""
        raise NotImplementedError

    def safe_passes(self) -> int:
        """How many passes of the current plain step may run with no decision in between."""
        at = self.decode.next_event_at()
        return (1 << 62) if at is None else at - self.decode.n

    def admits_arrivals(self) -> bool:
        """Whether an arrival now would change the next pass (False while capacity is full)."""
        return True

    def wake_at(self) -> float:
        """A time at which the scheduler has something to do by itself (model load), else inf."""
        return INF

    def has_work(self) -> bool:
        """Whether any request is still inside."""
        return self.decode.num_seqs > 0 or self.pop_waiting() is not None

    def continue_decoding(self) -> bool:
        """Whether the next pass is the decode set alone with nothing to decide (no prompt to
        read, nobody waiting); if so, take what that pass needs. False sends the loop back to
        :meth:`schedule` (the conservative default)."""
        return False

    # applying finished passes -----------------------------------------------------------------
    def complete(self, step: Step, now: float) -> None:
        """Apply one pass of ``step``, which ended at ``now``."""
        if step.decode:
            self.decode.n += 1
            if step.num_decode_seqs:
                self.last_decode_end = now
        for request, chunk in step.chunks:
            if request.phase != Phase.PREFILL:
                continue
            request.computed += chunk
            if request.computed >= request.prefill_target:
                self._sample_after_prefill(request, now)
        for request in self.decode.pop_due():
            self._due(request, now)

    def advance(self, passes: int, now: float) -> None:
        """Apply ``passes`` passes of the decode set alone (plain steps) that ended at ``now``."""
        self.decode.n += passes
        self.last_decode_end = now
        for request in self.decode.pop_due():
            self._due(request, now)

    def _sample_after_prefill(self, request: Request, now: float) -> None:
        if request.generated:  # recomputed after a preemption: this token ends a long gap
            self._gap(now - request.last_token_s)
        request.generated += 1
        if request.first_token_s < 0:
            request.first_token_s = now
        request.last_token_s = now
        if request.generated >= request.output_tokens:
            self._release(request)
            self.end(request, now, Status.COMPLETED)
        else:
            self._join(request)
            self.joined.append(request)

    def _join(self, request: Request) -> None:
        """A request sampled a token after its prompt: it joins the decode set."""
        self.decode.add(request)

    def _due(self, request: Request, now: float) -> None:
        """A decode-set member's event came due: by default it finished."""
        self._release(request)
        self.end(request, now, Status.COMPLETED)

    def _release(self, request: Request) -> None:
        """Give back what the request holds; subclasses free slots or KV blocks, then call this."""
        if request.phase == Phase.DECODE:
            self.decode.remove(request)


class IterationServer:
    """Runs a :class:`Scheduler`: schedule a pass, price it, let SimPy time pass, apply it."""

    def __init__(self, scheduler: Scheduler, cost: StepCost, *, fast: bool = True) -> None:
        self.scheduler = scheduler
        self.cost = cost
        self.fast = fast
        self._lines: dict[int, DecodeLine] = {}
        self.wakeable = False
        """In a fleet: when idle, also wake on :meth:`kick` (a request routed here sooner than
        the client's next arrival said), and never end on its own."""
        self._kicked: simpy.Event | None = None
        self.speed: SpeedProcess | None = None
        """The machine's speed factor over time (sim/noise.py), or None:
        every pass then takes exactly its priced time."""
        self._factor = 1.0
        self._factor_until = INF
        """When the factor in force changes (inf: never; runs of passes are cut there)."""

    def set_speed(self, process: SpeedProcess) -> None:
        """Give the server a machine speed factor (sim/noise.py), from the first pass on."""
        self.speed = process
        self._factor, self._factor_until = process.at(0.0)
        self._lines.clear()

    def _pace(self, now: float) -> None:
        """Take the speed factor in force at ``now`` (the next pass is priced with it). Called only
        once ``now`` reaches ``_factor_until``, which stays inf without a speed process."""
        assert self.speed is not None
        factor, self._factor_until = self.speed.at(now)
        if factor != self._factor:
            self._factor = factor
            self._lines.clear()

    def kick(self) -> None:
        """Wake the server if it is idle (a fleet routed a request to it)."""
        kicked = self._kicked
        if kicked is not None and not kicked.triggered:
            kicked.succeed()

    def reprice(self) -> None:
        """Forget the cached decode lines: the next passes are priced anew (for a cost that changes
        during the run, e.g. a GPU shared with other processes, sim.gpushare)."""
        self._lines.clear()

    def _line(self, num_seqs: int) -> DecodeLine:
        line = self._lines.get(num_seqs)
        if line is None:
            line = self.cost.decode_line(num_seqs)
            f = self._factor
            if f != 1.0:  # the machine's speed factor scales every term of the pass time
                line = DecodeLine(line.c0 * f, line.a1 * f, line.b1 * f, line.a2 * f, line.b2 * f)
            self._lines[num_seqs] = line
        return line

    def start(self, env: simpy.Environment, client: Client, recorder: Recorder) -> simpy.Process:
        """Spawn the server's process."""

        def on_finish(request: Request, now: float, status: Status) -> None:
            recorder.finish(request, now, status)
            client.on_done(request, now)

        self.scheduler.bind(on_finish, lambda gap_s: recorder.itl(gap_s, 0.0, 1, 1))
        return env.process(self._loop(env, client, recorder))

    def _loop(
        self, env: simpy.Environment, client: Client, recorder: Recorder
    ) -> Generator[simpy.Event, Any, None]:
        scheduler, cost, fast = self.scheduler, self.cost, self.fast
        decode = scheduler.decode
        deadlines: list[tuple[float, int, Request]] = []
        last_decode_end = now = env.now
        while True:
            if deadlines and deadlines[0][0] <= now:
                self._expire(deadlines, now)
            if client.next_arrival_s() <= now:
                self._admit(client.pop_arrivals(now), deadlines, recorder, now)
            step = scheduler.schedule(now)
            if step is None:
                wake = min(client.next_arrival_s(), self._next_deadline(deadlines), scheduler.wake_at())
                if self.wakeable:
                    kicked = self._kicked = env.event()
                    yield kicked if wake == INF else env.any_of([kicked, env.timeout(max(wake - env.now, 0.0))])
                    self._kicked = None
                    now = env.now
                    continue
                if wake == INF:
                    return
                yield env.timeout(max(wake - env.now, 0.0))
                now = env.now
                continue
            if fast and step.plain:
                # One run of decode passes, in pieces cut by member events and by the arrivals
                # and timeouts that land in it. A piece whose events leave nothing to decide
                # (a member finished, nobody is waiting) goes on into the next piece directly.
                d, context = step.num_decode_seqs, step.context_tokens
                while True:
                    if now >= self._factor_until:
                        self._pace(now)
                    line = self._line(d)
                    passes, duration = self._plain_run(line, d, context, client, deadlines, now)
                    end = now + duration
                    if env.peek() < end:  # another process acts first: let SimPy run it
                        yield env.timeout(end - env.now)
                    # (otherwise nothing can observe the clock in between: keep it locally, exactly)
                    recorder.now = end
                    recorder.num_passes += passes
                    recorder.busy_s += duration
                    self._record_run(line, d, context, passes, now, last_decode_end, recorder)
                    scheduler.joined.clear()
                    scheduler.advance(passes, end)
                    last_decode_end = now = end
                    if (client.next_arrival_s() <= now or (deadlines and deadlines[0][0] <= now)
                            or not decode.num_seqs or not scheduler.continue_decoding()):
                        break
                    d, context = decode.num_seqs, decode.context_tokens
                continue
            d = step.num_decode_seqs  # one pass: prompt chunks, or (reference mode) plain
            if now >= self._factor_until:
                self._pace(now)
            duration = self._line(d).at(step.context_tokens) if step.plain else cost.step_time(step.shape()) * self._factor
            end = now + duration
            if env.peek() < end:
                yield env.timeout(end - env.now)
            recorder.now = end
            recorder.num_passes += 1
            recorder.busy_s += duration
            if step.decode:
                if d:
                    self._record_pass(d, end, last_decode_end, recorder)
                    last_decode_end = end
                scheduler.joined.clear()
            scheduler.complete(step, end)
            now = end

    def _record_run(
        self, line: DecodeLine, d: int, context: int, passes: int, start: float, last_end: float,
        recorder: Recorder,
    ) -> None:
        """Inter-token gaps of a run of ``passes`` plain passes from ``start``.

        When every member's previous token came at ``start`` (the usual case), the gaps are
        the run's pass times: one or two line segments. Otherwise passes 2..K are, and the
        first pass's gaps are recorded as those of a single pass.
        """
        if last_end == start and not (self.scheduler.joined and self._late_joiners(last_end)):
            for begin, stop, p, q in line._segments(context, d, passes):
                recorder.itl(line.c0 + p + q * begin, q, stop - begin, d)
            return
        if passes > 1:
            for begin, stop, p, q in line._segments(context + d, d, passes - 1):
                recorder.itl(line.c0 + p + q * begin, q, stop - begin, d)
        self._record_pass(d, start + line.at(context), last_end, recorder)

    def _record_pass(self, d: int, end: float, last_end: float, recorder: Recorder) -> None:
        """Inter-token gaps of one pass ending at ``end`` for its ``d`` decoding sequences:
        ``end - last_end``, except for members that joined since and whose previous token came
        at another time (a prompt-only pass, or a decode set that was empty)."""
        joined = self._late_joiners(last_end) if self.scheduler.joined else []
        recorder.itl(end - last_end, 0.0, 1, d - len(joined))
        for request in joined:
            recorder.itl(end - request.last_token_s, 0.0, 1, 1)

    def _late_joiners(self, last_end: float) -> list[Request]:
        """Members that joined the decode set since its last pass, with a previous token at
        another time than that pass's end (so their next gap is their own)."""
        return [r for r in self.scheduler.joined if r.last_token_s != last_end and r.phase == Phase.DECODE]

    def _plain_run(
        self, line: DecodeLine, num_seqs: int, context: int, client: Client,
        deadlines: list[tuple[float, int, Request]], now: float,
    ) -> tuple[int, float]:
        """(passes, seconds) of a plain step run in one jump: up to the first pass boundary at
        which the scheduler has something to decide or an arrival (when it would be admitted)
        or a timeout has landed."""
        scheduler = self.scheduler
        event = self._next_deadline(deadlines) if deadlines else INF
        event = min(event, self._factor_until)  # the speed factor changes: a new line from there
        if scheduler.admits_arrivals():
            arrival = client.next_arrival_s()
            event = min(event, arrival)
        passes = scheduler.safe_passes()
        return line.run_until(context, num_seqs, passes if passes > 0 else 1, event - now)

    @staticmethod
    def _next_deadline(deadlines: list[tuple[float, int, Request]]) -> float:
        while deadlines and deadlines[0][2].phase == Phase.GONE:
            heapq.heappop(deadlines)
        return deadlines[0][0] if deadlines else INF

    def _expire(self, deadlines: list[tuple[float, int, Request]], now: float) -> None:
        while deadlines and deadlines[0][0] <= now:
            deadline, _, request = heapq.heappop(deadlines)
            if request.phase != Phase.GONE:
                self.scheduler.cancel(request, deadline, Status.TIMEOUT)

    def _admit(
        self,
        arrivals: Iterable[Request],
        deadlines: list[tuple[float, int, Request]],
        recorder: Recorder,
        now: float,
    ) -> None:
        for request in arrivals:
            recorder.arrive(request)
            if request.deadline_s < INF:
                heapq.heappush(deadlines, (request.deadline_s, request.id, request))
            self.scheduler.add(request, now)
