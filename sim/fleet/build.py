"""Build the server object that runs one resolved server spec (a replica, or a lone server)."""

from __future__ import annotations

import numpy as np

from sim.engines import ResolvedServer
from sim.noise import noise_seed
from sim.servers.base import IterationServer
from sim.servers.paged import PagedPolicy, PagedScheduler
from sim.servers.request_level import RequestLevelServer, service_distribution
from sim.servers.slots import SlotPolicy, SlotScheduler
from sim.servers.speculative import SpeculativePagedScheduler, SpeculativeSlotScheduler

__all__ = ["build_server"]


def build_server(
    resolved: ResolvedServer, num_requests: int, fast: bool, seed: int, machine: int = 0,
) -> IterationServer | RequestLevelServer:
    """The server a resolved spec describes; sampled service times are drawn from ``seed``
    (one per request id, so every replica of a fleet draws from the same column); its speed
    noise (sim/noise.py) from a stream of ``seed`` of its own per ``machine`` (replica index)."""
    server = _build(resolved, num_requests, fast, seed)
    if isinstance(server, IterationServer) and not resolved.noise.is_zero:
        server.set_speed(resolved.noise.process(noise_seed(seed, machine)))
    return server


def _build(resolved: ResolvedServer, num_requests: int, fast: bool, seed: int) -> IterationServer | RequestLevelServer:
    if resolved.service is not None:
        assert isinstance(resolved.policy, SlotPolicy)
        rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(4)[3])
        service = service_distribution(resolved.service.distribution).sample(rng, num_requests)
        return RequestLevelServer(resolved.policy.num_slots, service)
    assert resolved.cost is not None
    spec = resolved.speculative
    if spec is not None:  # the acceptance stream: a child of the seed of its own
        stream = int(np.random.SeedSequence(seed).spawn(5)[4].generate_state(1)[0])
        if isinstance(resolved.policy, PagedPolicy):
            return IterationServer(SpeculativePagedScheduler(resolved.policy, spec, stream), resolved.cost, fast=fast)
        assert isinstance(resolved.policy, SlotPolicy)
        return IterationServer(SpeculativeSlotScheduler(resolved.policy, spec, stream), resolved.cost, fast=fast)
    if isinstance(resolved.policy, PagedPolicy):
        return IterationServer(PagedScheduler(resolved.policy), resolved.cost, fast=fast)
    assert isinstance(resolved.policy, SlotPolicy)
    return IterationServer(SlotScheduler(resolved.policy), resolved.cost, fast=fast)
