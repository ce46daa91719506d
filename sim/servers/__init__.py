"""Serving architectures: one iteration loop (base), three scheduling policies, and the
request-level single queue used as the queueing-theory anchor."""

from sim.servers.base import IterationServer, Scheduler, Step
from sim.servers.paged import PagedPolicy, PagedScheduler
from sim.servers.request_level import RequestLevelServer
from sim.servers.slots import SlotPolicy, SlotScheduler

__all__ = [
    "IterationServer",
    "PagedPolicy",
    "PagedScheduler",
    "RequestLevelServer",
    "Scheduler",
    "SlotPolicy",
    "SlotScheduler",
    "Step",
]
