"""Several models on one Ollama server (issue 20, LOCAL_SERVERS.md §1): its scheduler over runners.

Each request names a model (drawn by the models' weights from the scenario's seed, on a stream of
its own). Every loaded model is a runner: today's slot server (its policy and cost resolved as a
one-model Ollama server, the split with the CPU included when it is loaded alone), fed by the
scheduler. The scheduler follows §1.3, by ``version``:

* >= 0.11.5: a request for a loaded model is dispatched at once (the fast path), whatever is
  pending; otherwise it joins one FIFO pending queue; a full queue (``max_queue``) answers 503;
* the scheduler loop takes the head: a loaded model gets it; a model that is loading makes it
  wait; with ``max_loaded_models`` runners loaded, or when the model does not fit **fully** in the
  VRAM the others leave (a model may be split with the CPU only when loaded alone; from 0.30:
  when its prediction ``file + 2·L·kv_heads·d_head·n_ctx·2 B`` exceeds 80 % of the free VRAM), a
  victim is unloaded first: loaded runners sorted by (keep_alive, model id), the first idle one,
  else the first, waited for until it goes idle; then ``vram_recovery_s`` passes before the next load;
* a load takes ``startup_s + model bytes / min(disk read bandwidth, load_cap_gb_s)`` (from 0.11.5
  the loop is blocked meanwhile: one load at a time); the keep_alive timer starts when a runner's
  last request ends (0: unload at once; negative: never); a request with another ``num_ctx``
  (``request_num_ctx``) needs its model's runner unloaded and loaded again (ollama #4541);
* 0.1.33-0.11.4: no fast path: every request goes through the pending queue (and its 503 cap) and
  the one loop, so requests for loaded models wait behind an eviction (head-of-line blocking,
  ollama #5724); a load runs beside the loop, but a request for the loading model blocks the loop
  until it ends, and a second model's load is requeued (250 ms, to the back) while one loads;
* up to 0.1.32: no scheduler: one global mutex held for each whole request, in arrival order; a
  request for another model unloads the loaded one and loads its own.

Resident runners share the GPU's time: while k of them compute, each pass takes k times its
single-model time (:mod:`sim.gpushare`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from sim.catalog import HardwareSpec, get_model
from sim.catalog.base import CatalogError
from sim.engines import CUDA_CONTEXT_BYTES, EngineError, ResolvedServer, resolve_server
from sim.engines.base import _format_for, _kv_bytes, _version
from sim.engines.slots import ollama_max_queue
from sim.gpushare import GpuShare, SharedStepCost
from sim.metrics import end_times
from sim.noise import SpeedProcess, noise_seed
from sim.pagecache import load_gb_s, page_cache, read_gb_s, warm_load_s
from sim.recorder import Recorder
from sim.requests import Request, Status
from sim.scenario import OllamaSpec
from sim.servers.base import INF, IterationServer
from sim.servers.slots import SlotScheduler

__all__ = ["ModelRunner", "MultiModelServer", "load_gb_s", "max_loaded", "model_of_requests", "read_gb_s",
           "resolve_models", "runner_of_requests", "scheduler_notes", "simulate_models"]

MODEL_STREAM = 20
"""Seed stream of the draw of each request's model (independent of the workload's draws)."""
OPTIONS_STREAM = 21
"""Seed stream of the draw of each request's num_ctx among its model's ``request_num_ctx``."""
FAST_PATH = (0, 11, 5)
"""First Ollama with the fast path for loaded models and loads inside the loop (commit d5a0d8d)."""
SCHEDULER = (0, 1, 33)
"""First Ollama with a scheduler (PR #3418); before it, one global mutex per request."""
FIT_80 = (0, 30, 0)
"""First Ollama whose fit rule for a second model is its prediction <= 80 % of the free VRAM."""
REQUEUE_S = 0.25
"""Before 0.11.5, a load asked for while another runs on the GPU is requeued after this long."""
GIB = 1 << 30


@dataclass
class ModelRunner:
    """One model of the server: its resolved one-model server and its scheduler state."""

    model: str
    resolved: ResolvedServer
    vram_bytes: float
    """VRAM the runner holds when fully on the GPU (weights, KV, context)."""
    fits_gpu: bool
    """Whether it fits the GPU fully (else it may only be loaded alone, split with the CPU)."""
    load_s: float
    keep_alive_s: float
    server: IterationServer | None = None
    process: Any = None
    feed: deque[Request] = field(default_factory=deque)
    ref: int = 0
    loaded: bool = False
    loading: bool = False
    timer: int = 0
    """Generation of the keep-alive timer (a newer timer or a dispatch voids older ones)."""
    loads: int = 0
    evictions: int = 0
    expiries: int = 0
    load_time_s: float = 0.0
    waited_for_load: int = 0
    joined: list[Request] = field(default_factory=list)
    """(llama-swap) requests that joined the swap to this model while it starts."""
    predicted_bytes: float = 0.0
    """(Ollama >= 0.30) the size Ollama predicts before loading it beside others (§2.3)."""
    options: str = ""
    """The runner options that set it apart from the model's other runners (``num_ctx=8192``)."""
    file_bytes: float = 0.0
    """Bytes of the model's file (what a cold load reads from disk, through the page cache)."""
    warm_load_s: float = -1.0
    """Load time when the file is in the host's page cache (negative: as ``load_s``)."""
    warm_loads: int = 0


class _Feed:
    """The client a runner sees: requests the scheduler dispatched to it."""

    def __init__(self, owner: MultiModelServer, runner: ModelRunner) -> None:
        self.owner, self.runner = owner, runner

    def next_arrival_s(self) -> float:
        return self.owner.env.now if self.runner.feed else INF

    def pop_arrivals(self, now: float) -> list[Request]:
        out = list(self.runner.feed)
        self.runner.feed.clear()
        return out

    def on_done(self, request: Request, now: float) -> None:
        self.owner.ended(self.runner, request, now)


def model_of_requests(weights: list[float], count: int, seed: int) -> np.ndarray:
    """Index (into the models of ``weights``) of the model each of ``count`` requests names."""
    w = np.array(weights, dtype=float)
    rng = np.random.default_rng([seed, MODEL_STREAM])
    return rng.choice(len(w), size=count, p=w / w.sum())


def runner_of_requests(spec: OllamaSpec, count: int, seed: int) -> np.ndarray:
    """Index (into :func:`resolve_models`' runners) of the runner each request needs: its model,
    then, for a model with several ``request_num_ctx``, one of them (uniformly)."""
    assert spec.models is not None
    models = model_of_requests([m.weight for m in spec.models], count, seed)
    variants = np.array([len(m.request_num_ctx or [0]) for m in spec.models])
    if variants.max() == 1:
        return models
    first = np.concatenate([[0], np.cumsum(variants)[:-1]])
    pick = (np.random.default_rng([seed, OPTIONS_STREAM]).random(count) * variants[models]).astype(int)
    return first[models] + pick


def _contexts(values: list[int] | None) -> list[int | None]:
    """A model's runner options by num_ctx: each value its clients send, or None (the server's)."""
    return list(values) if values else [None]


def resolve_models(spec: OllamaSpec, hardware: HardwareSpec) -> list[ModelRunner]:
    """Each model of ``spec`` as a one-model Ollama server (raises EngineError naming the model)."""
    assert spec.models is not None
    runners = []
    pairs = [(e, c) for e in spec.models for c in _contexts(e.request_num_ctx)]
    for entry, ctx_value in pairs:
        try:
            model = get_model(entry.model)
        except CatalogError as err:
            raise EngineError(f"server {spec.label!r}: models: {err}") from None
        options = {} if ctx_value is None else {"num_ctx": ctx_value}
        one = spec.model_copy(update={"models": None, "name": f"{spec.label}:{entry.model}", "load_time_s": 0.0,
                                      "keep_alive_s": math.inf, "cold_start": False, **options})
        resolved = resolve_server(one, model, hardware)
        fmt = _format_for(one, "ollama")
        ctx = int(resolved.notes["num_parallel"]) * int(resolved.notes["num_ctx"])  # type: ignore[call-overload]
        vram = model.weight_bytes(fmt) + ctx * _kv_bytes(model, one) + CUDA_CONTEXT_BYTES
        keep = spec.keep_alive_s if entry.keep_alive_s is None else entry.keep_alive_s
        weights = model.weight_bytes(fmt)
        runners.append(ModelRunner(
            entry.model, resolved, vram, "split" not in resolved.notes,
            spec.startup_s + weights / (load_gb_s(spec) * 1e9), INF if keep < 0 else keep,
            predicted_bytes=predicted_bytes(weights, model.num_layers, model.num_kv_heads,
                                            model.head_dim, ctx, spec.num_batch),
            options="" if ctx_value is None else f"num_ctx={ctx_value}",
            file_bytes=weights, warm_load_s=warm_load_s(spec.startup_s, weights, hardware),
        ))
    return runners


def predicted_bytes(file_bytes: float, layers: int, kv_heads: int, head_dim: int, ctx_tokens: int, num_batch: int) -> float:
    """Ollama >= 0.30's size prediction before loading a model beside others (§2.3): the file, an
    f16 KV of ``ctx_tokens`` (num_ctx x num_parallel), and 768 MiB / 2 GiB when num_batch is raised
    to 1024 / 2048."""
    extra = 2 * GIB if num_batch >= 2048 else 768 * (1 << 20) if num_batch >= 1024 else 0
    return file_bytes + 2 * layers * kv_heads * head_dim * ctx_tokens * 2 + extra


def max_loaded(spec: OllamaSpec, hardware: HardwareSpec) -> int:
    """OLLAMA_MAX_LOADED_MODELS: as set, else by version (§1.1): 1 up to 0.1.48, 3 x GPUs from 0.2.0."""
    if spec.max_loaded_models:
        return spec.max_loaded_models
    return 1 if _version(spec.version) < (0, 2, 0) else 3 * hardware.count


def scheduler_notes(spec: OllamaSpec, hardware: HardwareSpec) -> dict[str, object]:
    """What the run's scheduler is, by version: resident limit, queue cap, mode, fit rule."""
    v = _version(spec.version)
    mode = ("one global mutex per request (no scheduler, < 0.1.33)" if v < SCHEDULER else
            "every request through the scheduler loop, loads beside it (0.1.33-0.11.4)" if v < FAST_PATH else
            "fast path for loaded models, loads block the loop (>= 0.11.5)")
    fit = "prediction <= 80 % of free VRAM (>= 0.30)" if v >= FIT_80 else "fits fully (legacy estimate)"
    queue = ollama_max_queue(spec)
    return {"max_loaded_models": 1 if v < SCHEDULER else max_loaded(spec, hardware),
            "max_queue": queue if queue < 1 << 62 else "none", "scheduler": mode, "fit_rule": fit}


class MultiModelServer:
    """Ollama's scheduler over several runners (see the module docstring)."""

    def __init__(self, spec: OllamaSpec, runners: list[ModelRunner], hardware: HardwareSpec, model_of: np.ndarray,
                 seed: int = 0) -> None:
        self.spec, self.runners, self.model_of = spec, runners, model_of
        self.gpu_bytes = hardware.memory_bytes * hardware.count
        self.max_loaded = max_loaded(spec, hardware)
        self.max_queue = ollama_max_queue(spec)
        v = _version(spec.version)
        self.mutex, self.fast_path, self.fit_80 = v < SCHEDULER, v >= FAST_PATH, v >= FIT_80
        self.fast = False  # runners step pass by pass: a request dispatched mid-run joins at the next pass
        self.gpu = GpuShare()  # resident runners share the GPU's time (sim.gpushare)
        self.seed = seed
        """The scenario's seed (the machine's speed noise is drawn from it, sim.noise)."""
        self.speed: SpeedProcess | None = None
        """The box's one speed factor, shared by all its runners (made when the first noisy runner loads)."""
        self.cache = page_cache(spec.page_cache, hardware)
        self.pending: deque[Request] = deque()

    # the run --------------------------------------------------------------------------------
    def start(self, env: simpy.Environment, client: Any, recorder: Recorder) -> None:
        self.env, self.client, self.recorder = env, client, recorder
        self.kick = env.event()
        self.more = env.event()
        env.process(self._arrivals())
        env.process(self._loop())

    def _arrivals(self) -> Generator[simpy.Event, Any, None]:
        env, client = self.env, self.client
        while True:
            t = client.next_arrival_s()
            if t == INF:
                if self.more.triggered:
                    self.more = env.event()
                yield self.more  # a closed-loop user may send again when a request ends
                continue
            if t > env.now:
                yield env.timeout(t - env.now)
            for request in client.pop_arrivals(env.now):
                self._arrive(request)

    def _arrive(self, request: Request) -> None:
        runner = self.runners[int(self.model_of[request.id])]
        ready = runner.loaded and not runner.loading
        if ready and self.fast_path:  # the fast path (>= 0.11.5)
            self._dispatch(runner, request)
            return
        if len(self.pending) >= self.max_queue:
            self.recorder.arrive(request)
            request.generated = 0
            self.recorder.finish(request, self.env.now, Status.REJECTED)  # 503 server busy
            self.client.on_done(request, self.env.now)
            self._poke_arrivals()
            return
        if not ready:
            runner.waited_for_load += 1
        self.pending.append(request)
        self._poke()

    def _poke(self) -> None:
        if not self.kick.triggered:
            self.kick.succeed()

    def _poke_arrivals(self) -> None:
        if not self.more.triggered:
            self.more.succeed()

    def _dispatch(self, runner: ModelRunner, request: Request) -> None:
        runner.ref += 1
        runner.timer += 1  # stops the keep-alive timer
        self._sync_gpu(runner)
        self._feed(runner, request)

    def _load_time(self, runner: ModelRunner) -> float:
        """Seconds this load of ``runner`` takes: warm when its file is in the page cache."""
        if self.cache is not None and runner.warm_load_s >= 0 and self.cache.read(runner.model, runner.file_bytes):
            runner.warm_loads += 1
            return runner.warm_load_s
        return runner.load_s

    def _new_server(self, runner: ModelRunner) -> IterationServer:
        """A freshly loaded runner's server: its slots, priced on the GPU it shares (sim.gpushare)."""
        r = runner.resolved
        assert r.policy is not None and r.cost is not None
        server = IterationServer(SlotScheduler(r.policy), SharedStepCost(r.cost, self.gpu),  # type: ignore[arg-type]
                                 fast=self.fast)
        if not r.noise.is_zero:  # one machine: every runner sees its one speed factor
            if self.speed is None:
                self.speed = r.noise.process(noise_seed(self.seed, 0))
            server.set_speed(self.speed)
        self.gpu.attach(self.runners.index(runner), server)
        return server

    def _sync_gpu(self, runner: ModelRunner) -> None:
        """Tell the GPU share whether ``runner`` computes now (loaded, with requests in flight)."""
        self.gpu.set_busy(self.runners.index(runner), runner.loaded and runner.ref > 0, self.env.now)

    def _feed(self, runner: ModelRunner, request: Request) -> None:
        runner.feed.append(request)
        if runner.process is None or not runner.process.is_alive:
            assert runner.server is not None
            runner.process = runner.server.start(self.env, _Feed(self, runner), self.recorder)

    def ended(self, runner: ModelRunner, request: Request, now: float) -> None:
        """A runner reports a request's end: :meth:`on_finish` runs at that time (a runner with
        nothing else to wait for keeps its clock ahead of the environment's)."""
        if now > self.env.now:
            self.env.process(self._finish_at(runner, request, now))
            return
        self.on_finish(runner, request, now)

    def _finish_at(self, runner: ModelRunner, request: Request, now: float) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(now - self.env.now)
        self.on_finish(runner, request, now)

    def on_finish(self, runner: ModelRunner, request: Request, now: float) -> None:
        """A request of ``runner`` ended at ``now`` (= the environment's time)."""
        runner.ref -= 1
        self._sync_gpu(runner)
        self.client.on_done(request, now)
        self._poke_arrivals()
        if runner.ref == 0:
            if runner.keep_alive_s <= 0:
                runner.expiries += 1
                self._unload(runner)
            elif runner.keep_alive_s < INF:
                runner.timer += 1
                self.env.process(self._expire(runner, runner.timer))
            self._poke()

    def _expire(self, runner: ModelRunner, generation: int) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(runner.keep_alive_s)
        if runner.timer == generation and runner.ref == 0 and runner.loaded:
            runner.expiries += 1
            self._unload(runner)
            self._poke()

    def _unload(self, runner: ModelRunner) -> None:
        runner.loaded = False
        runner.server = None
        self.gpu.detach(self.runners.index(runner), self.env.now)

    def _used(self) -> float:
        return sum(r.vram_bytes for r in self.runners if r.loaded or r.loading)

    def _sibling(self, runner: ModelRunner) -> ModelRunner | None:
        """The model's runner with other options, loaded or loading (needs_reload: it goes first)."""
        return next((r for r in self.runners if r.model == runner.model and r is not runner
                     and (r.loaded or r.loading)), None)

    def _fits(self, runner: ModelRunner) -> bool:
        """Whether ``runner`` may load beside the loaded ones: fully by the estimate; from 0.30, its
        prediction within 80 % of the free VRAM."""
        if self.fit_80:
            return runner.predicted_bytes <= 0.8 * (self.gpu_bytes - self._used())
        return runner.fits_gpu and self._used() + runner.vram_bytes <= self.gpu_bytes

    def _loop(self) -> Generator[simpy.Event, Any, None]:
        if self.mutex:
            yield from self._loop_mutex()
            return
        if not self.fast_path:
            yield from self._loop_legacy()
            return
        env = self.env
        while True:
            if not self.pending:
                if self.kick.triggered:
                    self.kick = env.event()
                yield self.kick
                continue
            request = self.pending[0]
            runner = self.runners[int(self.model_of[request.id])]
            if runner.loaded:
                self.pending.popleft()
                self._dispatch(runner, request)
                continue
            other = self._sibling(runner)
            if other is not None:  # the model runs with other options: unload it, then load these
                yield from self._evict([other])
                continue
            loaded = [r for r in self.runners if r.loaded]
            if len(loaded) < self.max_loaded and (not loaded or self._fits(runner)):
                yield from self._load(runner)
                continue
            yield from self._evict(loaded)

    def _wait(self) -> simpy.Event:
        """The next poke (a request ended, a runner unloaded or loaded, a request arrived)."""
        if self.kick.triggered:
            self.kick = self.env.event()
        return self.kick

    def _evict(self, loaded: list[ModelRunner]) -> Generator[simpy.Event, Any, None]:
        """Unload a victim of ``loaded`` (§1.3 find_victim: by keep_alive then model id, the first
        idle one, else the first, waited for until idle), then wait for the VRAM to come back."""
        victim = sorted(loaded, key=lambda r: (r.keep_alive_s, r.model))
        idle = [r for r in victim if r.ref == 0]
        chosen = idle[0] if idle else victim[0]
        while chosen.ref > 0:  # wait for the victim's requests to end (and, before 0.11.5, its load)
            yield self._wait()
        if chosen.loaded:
            chosen.evictions += 1
            self._unload(chosen)
        if self.spec.vram_recovery_s > 0:
            yield self.env.timeout(self.spec.vram_recovery_s)

    # before 0.11.5 --------------------------------------------------------------------------
    def _loop_legacy(self) -> Generator[simpy.Event, Any, None]:
        """0.1.33-0.11.4: every request through this loop, in order; loads run beside it."""
        while True:
            if not self.pending:
                yield self._wait()
                continue
            request = self.pending[0]
            runner = self.runners[int(self.model_of[request.id])]
            if runner.loading:  # needs_reload blocks the loop until the load ends
                yield self._wait()
                continue
            if runner.loaded:
                self.pending.popleft()
                self._dispatch(runner, request)
                continue
            other = self._sibling(runner)
            if other is not None:  # other options: waits out that load and its requests, unloads it
                yield from self._evict([other])
                continue
            held = [r for r in self.runners if r.loaded or r.loading]
            loading = any(r.loading for r in held)
            if len(held) >= self.max_loaded:
                yield from self._evict(held)
            elif not held or (not loading and self._fits(runner)):
                self.pending.popleft()
                runner.loading = True  # now: the process starts at the next step
                runner.ref += 1  # the request that asked for the load
                runner.timer += 1
                self.env.process(self._load_beside(runner, request))
            elif loading:  # no second load on the GPU: back of the queue in 250 ms
                self.pending.popleft()
                self.env.process(self._requeue(request))
            else:
                yield from self._evict(held)

    def _load_beside(self, runner: ModelRunner, request: Request) -> Generator[simpy.Event, Any, None]:
        """A load started by the loop, which goes on; ``request`` (counted in ``ref``) is its first."""
        yield from self._load(runner)
        self._feed(runner, request)
        self._poke()

    def _requeue(self, request: Request) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(REQUEUE_S)
        self.pending.append(request)
        self._poke()

    def _loop_mutex(self) -> Generator[simpy.Event, Any, None]:
        """Up to 0.1.32: one request at a time, in arrival order; another model replaces the loaded one."""
        while True:
            if not self.pending:
                yield self._wait()
                continue
            request = self.pending.popleft()
            runner = self.runners[int(self.model_of[request.id])]
            if not runner.loaded:
                for other in self.runners:
                    if other.loaded:
                        other.evictions += 1
                        self._unload(other)
                yield from self._load(runner)
            self._dispatch(runner, request)
            while runner.ref > 0:  # the mutex is held until the request ends
                yield self._wait()

    def _load(self, runner: ModelRunner) -> Generator[simpy.Event, Any, None]:
        runner.loading = True
        runner.loads += 1
        load_s = self._load_time(runner)
        yield self.env.timeout(load_s)
        runner.load_time_s += load_s
        runner.server = self._new_server(runner)
        runner.process = None
        runner.loading = False
        runner.loaded = True
        self._sync_gpu(runner)
        runner.timer += 1  # the request at the head of the queue is dispatched next

    # results --------------------------------------------------------------------------------
    def per_model(self, recorder: Recorder, duration_s: float) -> dict[str, dict[str, Any]]:
        """Per model: requests, completions, rejections, output tok/s, TTFT and e2e p50/p99 (ms),
        loads, evictions, keep-alive expiries, seconds loading, share of requests that waited for a load."""
        ids = np.arange(recorder.num_arrived)
        out = {}
        end = end_times(recorder)
        for name in dict.fromkeys(r.model for r in self.runners):  # a model's runners by options, together
            group = [r for r in self.runners if r.model == name]
            mine = ids[np.isin(self.model_of[ids], [k for k, r in enumerate(self.runners) if r.model == name])]
            ok = mine[recorder.status[mine] == Status.COMPLETED]
            ttft = (recorder.first_token_s[ok] - recorder.arrival_s[ok]) * 1e3
            e2e = (end[ok] - recorder.arrival_s[ok]) * 1e3

            def pct(x: np.ndarray, q: float) -> float:
                return float(np.percentile(x, q)) if x.size else float("nan")

            out[name] = {
                "requests": int(mine.size), "completed": int(ok.size),
                "rejected": int(np.sum(recorder.status[mine] == Status.REJECTED)),
                "output_throughput": float(recorder.generated[ok].sum() / duration_s) if duration_s > 0 else 0.0,
                "ttft_p50_ms": pct(ttft, 50), "ttft_p99_ms": pct(ttft, 99),
                "e2el_p50_ms": pct(e2e, 50), "e2el_p99_ms": pct(e2e, 99),
                "loads": sum(r.loads for r in group), "evictions": sum(r.evictions for r in group),
                "expiries": sum(r.expiries for r in group), "load_time_s": sum(r.load_time_s for r in group),
                "load_s_each": (sum(r.load_time_s for r in group) / loads) if (loads := sum(r.loads for r in group))
                else group[0].load_s,
                "warm_loads": sum(r.warm_loads for r in group),
                "split": str(group[0].resolved.notes.get("split", "100% GPU")),  # as `ollama ps` prints it
                "waited_for_load": sum(r.waited_for_load for r in group) / mine.size if mine.size else 0.0,
            }
        return out


def simulate_models(spec: OllamaSpec, hardware: HardwareSpec, client: Any, workload_size: int,
                    seed: int) -> tuple[Recorder, dict[str, dict[str, float]], MultiModelServer]:
    """Replay ``client``'s requests through a multi-model Ollama server; its records, per-model results
    and the server (its runners, its GPU share)."""
    runners = resolve_models(spec, hardware)
    env = simpy.Environment()
    recorder = Recorder(max(workload_size, 1))
    server = MultiModelServer(spec, runners, hardware, runner_of_requests(spec, max(workload_size, 1), seed), seed)
    server.start(env, client, recorder)
    env.run()
    recorder.trim()
    duration = float(np.nanmax(end_times(recorder))) if recorder.num_arrived else 0.0
    return recorder, server.per_model(recorder, duration), server
