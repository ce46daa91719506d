"""Several processes on one GPU: their passes share its time (processor sharing).

Ollama keeps several models resident, each in its own runner process, and llama-swap can run
several llama-server processes at once (a ``swap: false`` group, the matrix). On one CUDA device
without MPS the processes' kernels do not run concurrently: the driver time-slices the GPU between
the contexts that have work. servesim models that as processor sharing at pass granularity: while
``k`` of the processes on a GPU have requests in flight, each of their passes takes ``k`` times
its single-process time; a process alone on the GPU runs at its own speed, exactly as a
one-model server (the cost object is then not even consulted differently: the wrapped cost's
own values are returned).

The share is sampled when a pass starts: a pass in progress keeps its price when another process
becomes busy or idle (passes are milliseconds long). Servers on a shared GPU therefore step one
pass at a time (``fast=False``), so that each pass is priced with the share of its start.
Not modelled: the context-switch cost of time slicing, CPU-side work that overlaps with the other
process's kernels, and MPS (which would let kernels overlap).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sim.costs import DecodeLine, StepCost
from sim.shapes import BatchShape

__all__ = ["GpuShare", "SharedStepCost"]


@dataclass
class GpuShare:
    """The processes on one GPU and which of them have work."""

    busy: set[int] = field(default_factory=set)
    """Members with requests in flight."""
    servers: dict[int, Any] = field(default_factory=dict)
    """Each member's running server (its cached decode lines are dropped when the share changes)."""
    busy_time_s: float = 0.0
    """Seconds during which two or more members had work at once (for the run's notes)."""
    _since: float = 0.0

    @property
    def factor(self) -> int:
        """How many times longer a pass takes now (the number of busy members, at least 1)."""
        return max(1, len(self.busy))

    def attach(self, member: int, server: Any) -> None:
        """``member`` runs ``server`` (a freshly loaded runner)."""
        self.servers[member] = server

    def detach(self, member: int, now: float) -> None:
        """``member`` was unloaded."""
        self.servers.pop(member, None)
        self.set_busy(member, False, now)

    def set_busy(self, member: int, busy: bool, now: float) -> None:
        """``member`` has (or no longer has) requests in flight."""
        if (member in self.busy) == busy:
            return
        if len(self.busy) >= 2:
            self.busy_time_s += now - self._since
        if busy:
            self.busy.add(member)
        else:
            self.busy.discard(member)
        self._since = now
        for server in self.servers.values():  # every member's next pass is priced with the new share
            server.reprice()


@dataclass
class SharedStepCost:
    """A member's cost on a shared GPU: its own cost, times the share's factor at the pass's start."""

    inner: StepCost
    share: GpuShare

    def step_time(self, shape: BatchShape) -> float:
        t = self.inner.step_time(shape)
        k = self.share.factor
        return t if k == 1 else t * k

    def decode_line(self, num_seqs: int) -> DecodeLine:
        line = self.inner.decode_line(num_seqs)
        k = self.share.factor
        if k == 1:
            return line
        return DecodeLine(line.c0 * k, line.a1 * k, line.b1 * k, line.a2 * k, line.b2 * k)
