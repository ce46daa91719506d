"""Clients: what hands a pre-drawn :class:`~sim.workload.Workload` to a server, one request at
a time (part of the compiled core: the iteration loop asks them for arrivals every pass)."""

from __future__ import annotations

import heapq
from array import array
from typing import TYPE_CHECKING

from sim.requests import Request

if TYPE_CHECKING:
    from sim.workload.table import Workload

__all__ = ["SESSION_BLOCK_TOKENS", "ClosedLoopClient", "OpenLoopClient", "make_client"]

INF = float("inf")

SESSION_BLOCK_TOKENS = 16
"""Granularity of the synthetic prefix hashes of multi-turn conversations."""


class _Issuer:
    """Builds request ``i`` from the workload's columns (read through their buffers: no copies)."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.prompt = workload.prompt_tokens.data
        self.output = workload.output_tokens.data
        self.timeout_s: float = workload.timeout_s
        self.hash_block_tokens: int = workload.hash_block_tokens

    def request(self, i: int, arrival_s: float, user: int = -1) -> Request:
        hashes = self.workload.block_hashes
        return Request(
            i,
            arrival_s,
            int(self.prompt[i]),
            int(self.output[i]),
            arrival_s + self.timeout_s,
            user,
            tuple(int(h) for h in hashes[i]) if hashes is not None else (),
            self.hash_block_tokens,
        )


class OpenLoopClient:
    """Requests arrive at pre-drawn times, whatever the server does."""

    def __init__(self, workload: Workload) -> None:
        assert workload.arrival_s is not None
        self.issuer = _Issuer(workload)
        self.times = array("d", workload.arrival_s)  # 8 bytes a request; Python floats on access
        self.times.append(INF)  # sentinel: O(1) peeks
        self.next = 0

    def next_arrival_s(self) -> float:
        return self.times[self.next]

    def pop_arrivals(self, now: float) -> list[Request]:
        times, i = self.times, self.next
        if times[i] > now:
            return []
        out = []
        while times[i] <= now:
            out.append(self.issuer.request(i, times[i]))
            i += 1
        self.next = i
        return out

    def on_done(self, request: Request, now: float) -> None:
        """Open-loop clients do not react."""


class ClosedLoopClient:
    """``users`` users: each sends, waits for the end of its request, thinks, sends again.

    With ``turns > 1`` each user holds a conversation: the next prompt is the history (earlier
    prompts and answers) plus a new message, and carries prefix-block hashes in 16-token
    blocks that are equal across the turns of one conversation.
    """

    def __init__(self, workload: Workload, limit: int | None = None, until_s: float = INF) -> None:
        self.issuer = _Issuer(workload)
        self.turns: int = workload.turns
        self.think_s = workload.think_s
        self.limit = min(limit or len(workload), len(workload))
        self.until_s = until_s
        self.issued = 0
        users: int = workload.users
        spacing = workload.ramp_up_s / users if users else 0.0
        self._pending: list[tuple[float, int, int]] = [(u * spacing, u, u) for u in range(users)]
        if workload.start_s is not None:  # per-user start offsets drawn from the seed
            self._pending = [(float(t), u, u) for u, t in enumerate(workload.start_s.tolist())]
            heapq.heapify(self._pending)
        self._seq = users
        self._history = [0] * users  # tokens of the conversation so far, per user
        self._turn = [0] * users
        self._session = list(range(users))
        self._sessions = users

    def next_arrival_s(self) -> float:
        if not self._pending or self.issued >= self.limit:
            return INF
        t = self._pending[0][0]
        return t if t < self.until_s else INF

    def pop_arrivals(self, now: float) -> list[Request]:
        out = []
        pending = self._pending
        while pending and pending[0][0] <= now and self.issued < self.limit and pending[0][0] < self.until_s:
            t, _, user = heapq.heappop(pending)
            request = self.issuer.request(self.issued, t, user)
            if self.turns > 1:
                self._carry_history(request, user)
            out.append(request)
            self.issued += 1
        return out

    def _carry_history(self, request: Request, user: int) -> None:
        history = self._history[user]
        request.prompt_tokens += history
        blocks = -(-request.prompt_tokens // SESSION_BLOCK_TOKENS)
        base = self._session[user] << 24
        request.block_hashes = tuple(range(base, base + blocks))
        request.hash_block_tokens = SESSION_BLOCK_TOKENS

    def _next_turn(self, request: Request) -> None:
        user = request.user
        self._turn[user] += 1
        if self._turn[user] >= self.turns or request.generated < request.output_tokens:
            self._turn[user], self._history[user] = 0, 0  # conversation over (or abandoned)
            self._session[user] = self._sessions
            self._sessions += 1
        else:
            self._history[user] = request.prompt_tokens + request.generated

    def on_done(self, request: Request, now: float) -> None:
        if request.user >= 0:
            if self.turns > 1:
                self._next_turn(request)
            think = float(self.think_s[request.id]) if self.think_s is not None else 0.0
            self._seq += 1
            heapq.heappush(self._pending, (now + think, self._seq, request.user))


def make_client(
    workload: Workload, num_requests: int | None = None, duration_s: float = INF
) -> OpenLoopClient | ClosedLoopClient:
    """The client that replays ``workload``: open loop when it has arrival times, else closed
    loop, stopping after ``num_requests`` requests or at ``duration_s``."""
    if workload.arrival_s is None:
        return ClosedLoopClient(workload, num_requests, duration_s)
    return OpenLoopClient(workload)
