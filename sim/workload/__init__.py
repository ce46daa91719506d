"""The workload layer: what requests a run sends and who sends them.

* :mod:`sim.workload.table` -- :class:`Workload`, the run's requests as columns;
* :mod:`sim.workload.generate` -- :func:`generate_workload`: arrivals, lengths and think times
  drawn from a workload spec and a seed (traces are read by :mod:`sim.traces`);
* :mod:`sim.workload.clients` -- the open- and closed-loop clients that hand the requests to a
  server (part of the compiled core), and :func:`make_client`.

One ``SeedSequence(seed)`` is spawned into independent streams (arrivals, lengths, think times),
so every server in a scenario sees exactly the same requests (common random numbers).
"""

from __future__ import annotations

from sim.workload.clients import ClosedLoopClient, OpenLoopClient, make_client
from sim.workload.generate import generate_workload
from sim.workload.table import Workload

__all__ = ["ClosedLoopClient", "OpenLoopClient", "Workload", "generate_workload", "make_client"]
