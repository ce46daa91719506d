"""llama-swap in front of llama-server processes, one per model (issue 20, LOCAL_SERVERS.md §5).

Which processes may run together is :mod:`sim.llamaswap_groups`' (groups, with the
``(default)`` group of one process at a time, or the matrix): starting a model stops the running
models it names (its victims). Each model's process is today's llama.cpp server (its preset
resolved on that model), fed by the proxy below; the runner machinery is :mod:`sim.multimodel`'s.
Processes that run together share the GPU's time (:mod:`sim.gpushare`), and starts happen one
after another (llama-swap may start two processes
that evict nothing in parallel; they would share the disk).

* A swap stops its victims once their in-flight requests have ended, starts the target and
  polls its health: first after 250 ms, then every 5 s (<= v217) or 1 s (v218+), so a process is
  ready at ``0.25 + k x interval`` s, the first such time after its load
  (``startup_s + bytes / min(disk, load_cap_gb_s)``).
* v218+ (the FIFO router, PR #790): a request is served at once when its model is running and
  ready; one arriving during a swap to its model joins that swap; others queue FIFO. The first
  queued request whose victims have no request in flight starts a swap; when the swap ends
  **every** queued request for that model is served (ABCABC is served AABBCC). There is no
  starvation guard: requests for the running model keep being served while others wait.
* <= v217 (ProcessGroup): each swap group's lock serialises its swaps: a swap holds the lock
  until the first request to the new process completes, and the group's queued requests are taken
  one at a time; a request for another member swaps again. Alternating traffic pays a swap per
  request. A group with ``swap: false`` (and the matrix) takes no lock: its queued requests are
  all served when their process is ready.
* ``ttl`` (0: never) stops an idle process; ``concurrencyLimit`` answers 429 beyond that many
  requests in flight to one model.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from sim.catalog import HardwareSpec, get_model
from sim.catalog.base import CatalogError
from sim.engines import CUDA_CONTEXT_BYTES, EngineError, ResolvedServer, resolve_server
from sim.engines.base import GIB, _format_for, _kv_bytes
from sim.gpushare import GpuShare
from sim.llamaswap_groups import Placement, check_vram, placement_of
from sim.metrics import end_times
from sim.multimodel import (
    ModelRunner,
    MultiModelServer,
    model_of_requests,
    page_cache,
    read_gb_s,
    warm_load_s,
)
from sim.recorder import Recorder
from sim.requests import Request, Status
from sim.scenario import LlamaCppSpec
from sim.servers.base import INF

__all__ = ["FIFO_ROUTER_VERSION", "LlamaSwapServer", "Placement", "placement_of", "ready_after", "resolve_swap_models",
           "simulate_swap", "swap_results"]

FIFO_ROUTER_VERSION = 218
"""First llama-swap release with the router (PR #790) and 1 s health polls."""
FIRST_POLL_S = 0.25


def _release(version: str) -> int:
    digits = "".join(c for c in version if c.isdigit())
    if not digits:
        raise EngineError(f"llama_swap.version {version!r} has no number; write it like v250")
    return int(digits)


def ready_after(load_s: float, release: int) -> float:
    """Seconds from spawning a process to llama-swap seeing it healthy: 0.25 s, then every poll."""
    interval = 1.0 if release >= FIFO_ROUTER_VERSION else 5.0
    if load_s <= FIRST_POLL_S:
        return FIRST_POLL_S
    return FIRST_POLL_S + math.ceil((load_s - FIRST_POLL_S) / interval - 1e-12) * interval


def _vram(resolved: ResolvedServer, weights: float, kv_per_token: float, hardware: HardwareSpec) -> float:
    """VRAM one llama-server holds: its GPU part when split with the CPU, else weights + KV + context."""
    if "vram_gib" in resolved.notes:
        return float(resolved.notes["vram_gib"]) * GIB  # type: ignore[arg-type]
    return weights + int(resolved.notes["ctx_size"]) * kv_per_token + CUDA_CONTEXT_BYTES * hardware.count  # type: ignore[call-overload]


def resolve_swap_models(spec: LlamaCppSpec, hardware: HardwareSpec) -> list[ModelRunner]:
    """Each model behind llama-swap as a one-model llama.cpp server (EngineError naming the model, or
    when models the groups or matrix let run at once do not fit the GPU together)."""
    swap = spec.llama_swap
    assert swap is not None
    release = _release(swap.version)
    gb_s = read_gb_s(spec.label, swap.storage, swap.load_cap_gb_s)
    runners = []
    for entry in swap.models:
        try:
            model = get_model(entry.model)
        except CatalogError as err:
            raise EngineError(f"server {spec.label!r}: llama_swap.models: {err}") from None
        one = spec.model_copy(update={"llama_swap": None, "name": f"{spec.label}:{entry.model}"})
        resolved = resolve_server(one, model, hardware)
        weights = model.weight_bytes(_format_for(one, "llama.cpp"))
        load = swap.startup_s + weights / (gb_s * 1e9)
        runners.append(ModelRunner(entry.model, resolved, _vram(resolved, weights, _kv_bytes(model, one), hardware),
                                   "split" not in resolved.notes, ready_after(load, release),
                                   entry.ttl_s if entry.ttl_s > 0 else INF, file_bytes=weights,
                                   warm_load_s=ready_after(warm_load_s(swap.startup_s, weights, hardware), release)))
    check_vram(spec.label, placement_of(swap), [r.vram_bytes for r in runners], hardware.memory_bytes * hardware.count,
               hardware.id)
    return runners


class LlamaSwapServer(MultiModelServer):
    """llama-swap over its groups or matrix (see the module docstring)."""

    def __init__(self, spec: LlamaCppSpec, runners: list[ModelRunner], model_of: np.ndarray,
                 placement: Placement | None = None, hardware: HardwareSpec | None = None, seed: int = 0) -> None:
        assert spec.llama_swap is not None
        self.swap = spec.llama_swap
        self.router = _release(self.swap.version) >= FIFO_ROUTER_VERSION
        self.runners, self.model_of, self.fast = runners, model_of, False
        self.gpu = GpuShare()  # processes running together share the GPU's time (sim.gpushare)
        self.seed, self.speed = seed, None  # one machine speed factor for all processes (sim.noise)
        self.cache = page_cache(self.swap.page_cache, hardware) if hardware is not None else None
        self.placement = placement if placement is not None else placement_of(self.swap)
        self.index = {id(r): k for k, r in enumerate(runners)}
        self.pending: deque[Request] = deque()
        self.swaps = 0
        self.locked: dict[int, ModelRunner] = {}
        """<= v217: by swap group, the process whose first request holds the group's lock."""

    def _runner(self, request: Request) -> ModelRunner:
        return self.runners[int(self.model_of[request.id])]

    def _group(self, runner: ModelRunner) -> int:
        return self.placement.group_of[self.index[id(runner)]]

    def _locking(self, runner: ModelRunner) -> bool:
        """<= v217 and ``runner`` is in a swap group: its requests pass the group's lock."""
        return not self.router and self.placement.locks(self.index[id(runner)])

    def _open(self, runner: ModelRunner) -> bool:
        """Whether a request for the loaded ``runner`` is served at once (not held by its group's lock)."""
        if not self._locking(runner):
            return True
        g = self._group(runner)
        return g not in self.locked and not any(self._group(self._runner(q)) == g for q in self.pending)

    def _arrive(self, request: Request) -> None:
        runner = self._runner(request)
        if runner.loaded and self._open(runner):
            self._serve(runner, request)
            return
        if runner.loading and not self._locking(runner):  # joins the swap to its model
            runner.waited_for_load += 1
            runner.joined.append(request)
            return
        runner.waited_for_load += 1
        self.pending.append(request)
        self._poke()

    def _serve(self, runner: ModelRunner, request: Request) -> None:
        if runner.ref >= self.swap.concurrency_limit:  # 429 Too Many Requests
            self.recorder.arrive(request)
            self.recorder.finish(request, self.env.now, Status.REJECTED)
            self.client.on_done(request, self.env.now)
            self._poke_arrivals()
            return
        self._dispatch(runner, request)

    def on_finish(self, runner: ModelRunner, request: Request, now: float) -> None:
        if self.locked and self.locked.get(self._group(runner)) is runner:
            del self.locked[self._group(runner)]  # the first request through a swap released the group lock
        super().on_finish(runner, request, now)
        self._poke()

    def _unload(self, runner: ModelRunner) -> None:
        super()._unload(runner)
        self._poke()

    def _next(self) -> tuple[int, ModelRunner, list[ModelRunner] | None] | None:
        """The first queued request that can move: its index, its model, and the victims to stop
        (None: the model is ready, serve it); None when every queued request waits."""
        held: set[int] = set()  # <= v217: swap groups whose lock (or first queued request) holds the rest
        running = [k for k, r in enumerate(self.runners) if r.loaded or r.loading]
        for i, q in enumerate(self.pending):
            target = self._runner(q)
            locking = self._locking(target)
            g = self._group(target)
            if locking and (g in self.locked or g in held):
                continue
            if target.loaded:
                return i, target, None
            if not target.loading:
                victims = [self.runners[k] for k in self.placement.victims(self.index[id(target)], running)]
                if not any(v.ref > 0 or v.loading for v in victims):
                    return i, target, victims
            if locking:
                held.add(g)
        return None

    def _loop(self) -> Generator[simpy.Event, Any, None]:
        env = self.env
        while True:
            move = self._next() if self.pending else None
            if move is None:  # wait for requests to end (victims going idle) or to arrive
                if self.kick.triggered:
                    self.kick = env.event()
                yield self.kick
                continue
            i, target, victims = move
            if victims is None:
                request = self.pending[i]
                del self.pending[i]
                self._serve(target, request)
                continue
            for r in victims:
                r.evictions += 1
                self._unload(r)
            yield from self._start(target, self.pending[i])

    def _start(self, runner: ModelRunner, first: Request) -> Generator[simpy.Event, Any, None]:
        self.swaps += 1
        yield from self._load(runner)  # start-up, health polls: the runner's load time
        joined, runner.joined = runner.joined, []
        if not self._locking(runner):  # every queued request for this model is served now (grouped FIFO)
            mine = [q for q in self.pending if self._runner(q) is runner]
            self.pending = deque(q for q in self.pending if self._runner(q) is not runner)
            for q in sorted(joined + mine, key=lambda q: (q.arrival_s, q.id)):
                self._serve(runner, q)
        else:  # the lock is held until the first request to the new process completes
            self.pending.remove(first)
            self.locked[self._group(runner)] = runner
            self._serve(runner, first)


def simulate_swap(spec: LlamaCppSpec, hardware: HardwareSpec, client: Any, workload_size: int, seed: int,
                  model_of: np.ndarray | None = None) -> tuple[Recorder, LlamaSwapServer]:
    """Replay ``client``'s requests through llama-swap; its records and the server (per-model counters)."""
    assert spec.llama_swap is not None
    runners = resolve_swap_models(spec, hardware)
    env = simpy.Environment()
    recorder = Recorder(max(workload_size, 1))
    if model_of is None:
        model_of = model_of_requests([m.weight for m in spec.llama_swap.models], max(workload_size, 1), seed)
    server = LlamaSwapServer(spec, runners, model_of, placement_of(spec.llama_swap), hardware, seed)
    server.start(env, client, recorder)
    env.run()
    recorder.trim()
    return recorder, server


def swap_results(server: LlamaSwapServer, recorder: Recorder) -> dict[str, dict[str, float]]:
    """Per model (as :meth:`MultiModelServer.per_model`), over the run's duration."""
    duration = float(np.nanmax(end_times(recorder))) if recorder.num_arrived else 0.0
    return server.per_model(recorder, duration)
