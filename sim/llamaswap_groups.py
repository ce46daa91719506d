"""Which llama-swap processes may run together: groups and the matrix (issue 20, LOCAL_SERVERS.md §5).

A :class:`Placement` answers one question for :mod:`sim.llamaswap`: to start model ``t`` while
the models ``running`` run (or start), which of them must be stopped first?

* **groups** (``routing: group``): each model is in one group; models named in no group form the
  ``(default)`` group (``swap: true``, ``exclusive: true``), so with no groups one process runs at
  a time. Starting ``t`` stops the other running members of its group when the group swaps
  (``swap: true``), and, when its group is ``exclusive``, every running model of the other groups
  that are not ``persistent``. (Read from llama-swap's config as "starting a member stops ...";
  whether a request to an already running member of an exclusive group also stops a non-exclusive
  group started after it is not confirmed, and not modelled.)
* **matrix** (``routing: matrix``, v202+): sets of models allowed together; ``t`` runs in the set
  containing it with the least sum of ``evict_costs`` (default 1) over the running models outside
  it, ties by the order written; those models are stopped.

llama-swap does not check memory: a second llama-server that does not fit fails to load. servesim
refuses such a configuration at start-up instead (:func:`check_vram`): the largest set of models
the groups (or a matrix set) let run at once must fit the GPU together, else an error names the
groups and a fix.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.engines import EngineError
from sim.scenario.local import LlamaSwapSpec, expand_set

__all__ = ["DEFAULT_GROUP", "Group", "Placement", "check_vram", "placement_of"]

DEFAULT_GROUP = "(default)"
GIB = 2.0**30


@dataclass(frozen=True)
class Group:
    """One group: indices (into ``llama_swap.models``) of its members and its three flags."""

    name: str
    members: tuple[int, ...]
    swap: bool = True
    exclusive: bool = True
    persistent: bool = False


class Placement:
    """Groups or the matrix of one llama-swap server (see the module docstring)."""

    def __init__(self, names: list[str], groups: list[Group] | None = None, sets: list[list[int]] | None = None,
                 costs: list[float] | None = None, set_names: list[str] | None = None) -> None:
        self.names = names
        self.groups = groups or []
        self.group_of = [0] * len(names)
        for g, group in enumerate(self.groups):
            for m in group.members:
                self.group_of[m] = g
        self.sets = sets
        self.set_names = set_names or []
        self.costs = costs or [1.0] * len(names)

    @property
    def matrix(self) -> bool:
        return self.sets is not None

    def default_only(self) -> bool:
        """True when every model is in the one ``(default)`` group (today's llama-swap server)."""
        return not self.matrix and len(self.groups) == 1 and self.groups[0].name == DEFAULT_GROUP

    def locks(self, model: int) -> bool:
        """Whether ``model``'s group swaps under a lock (a swap group; the ProcessGroup lock of <= v217)."""
        return not self.matrix and self.groups[self.group_of[model]].swap

    def victims(self, target: int, running: list[int]) -> list[int]:
        """The running models (in the order given) to stop before ``target`` starts."""
        if self.sets is not None:
            return [m for m in running if m != target and m not in self.best_set(target, running)]
        g = self.group_of[target]
        mine = self.groups[g]
        out = []
        for m in running:
            if m == target:
                continue
            other = self.group_of[m]
            if (other == g and mine.swap) or (other != g and mine.exclusive and not self.groups[other].persistent):
                out.append(m)
        return out

    def best_set(self, target: int, running: list[int]) -> list[int]:
        """The matrix set for ``target``: least eviction cost of the running models outside it, first on ties."""
        assert self.sets is not None
        best: list[int] = []
        best_cost = float("inf")
        for s in self.sets:
            if target not in s:
                continue
            cost = sum(self.costs[m] for m in running if m not in s)
            if cost < best_cost:
                best, best_cost = s, cost
        return best

    def together(self) -> list[tuple[str, list[int]]]:
        """Each largest set of models that may run at once, with the groups (or matrix set) that allow it."""
        if self.sets is not None:
            return [(f"matrix set {name!r}", s) for name, s in zip(self.set_names, self.sets, strict=True)]
        out = []
        for g, group in enumerate(self.groups):
            if not group.swap and len(group.members) > 1:
                out.append((f"group {group.name!r} (swap: false)", list(group.members)))
        # persistent groups, every non-exclusive group and one exclusive group can run at once
        always = [g for g, group in enumerate(self.groups) if group.persistent or not group.exclusive]
        exclusive = [g for g, group in enumerate(self.groups) if not group.persistent and group.exclusive]
        for gs in [always + [pick] for pick in exclusive] or [always]:
            if len(gs) > 1:
                label = " and ".join(f"{self.groups[g].name!r}" for g in gs)
                out.append((f"groups {label} ({self._why(gs)})", [m for g in gs for m in self.groups[g].members]))
        return out

    def describe(self) -> str:
        """One line for the run's notes: the groups with their flags, or the matrix sets."""
        if self.sets is not None:
            costs = ", ".join(f"{n} {c:g}" for n, c in zip(self.names, self.costs, strict=True))
            return f"matrix sets {' | '.join(self.set_names)} (evict costs {costs})"
        parts = []
        for group in self.groups:
            flags = [f"swap: {str(group.swap).lower()}", f"exclusive: {str(group.exclusive).lower()}"]
            if group.persistent:
                flags.append("persistent")
            parts.append(f"{group.name} [{', '.join(self.names[m] for m in group.members)}] ({', '.join(flags)})")
        return "groups " + "; ".join(parts)

    def _why(self, gs: list[int]) -> str:
        parts = [f"{self.groups[g].name!r} is {'persistent' if self.groups[g].persistent else 'exclusive: false'}"
                 for g in gs if self.groups[g].persistent or not self.groups[g].exclusive]
        return ", ".join(parts)


def placement_of(swap: LlamaSwapSpec) -> Placement:
    """The groups (with ``(default)``) or the matrix sets of ``swap``, by model index."""
    names = [m.model for m in swap.models]
    index = {n: i for i, n in enumerate(names)}
    if swap.routing == "matrix":
        assert swap.matrix is not None
        sets, set_names = [], []
        for expr in swap.matrix.sets:
            for s in expand_set(expr):
                sets.append([index[m] for m in s])
                set_names.append(" & ".join(s))
        costs = [float(swap.matrix.evict_costs.get(n, 1.0)) for n in names]
        return Placement(names, sets=sets, costs=costs, set_names=set_names)
    groups = [Group(g.name, tuple(index[m] for m in g.members), g.swap, g.exclusive, g.persistent) for g in swap.groups]
    grouped = {m for g in groups for m in g.members}
    rest = tuple(i for i in range(len(names)) if i not in grouped)
    if rest:
        groups.append(Group(DEFAULT_GROUP, rest))
    return Placement(names, groups=groups)


def check_vram(label: str, placement: Placement, vram: list[float], capacity: float, gpu: str) -> None:
    """Refuse (EngineError) when models the placement lets run at once need more than ``capacity`` bytes."""
    for where, members in placement.together():
        if placement.matrix:
            chosen = members
        else:  # a swap group contributes its largest member
            picks = []
            for m in members:
                group = placement.groups[placement.group_of[m]]
                picks.append(max(group.members, key=lambda k: vram[k]) if group.swap else m)
            chosen = list(dict.fromkeys(picks))
        need = sum(vram[m] for m in chosen)
        if need <= capacity:
            continue
        sizes = ", ".join(f"{placement.names[m]} {vram[m] / GIB:.1f}" for m in chosen)
        if placement.matrix:
            fix = "split the set (write | between its models) or use smaller models or ctx_size"
        elif where.startswith("group "):
            fix = "set swap: true on it (one member at a time) or move members to another group"
        else:
            fix = "set exclusive: true / persistent: false on one of them, or put the models in one group with swap: true"
        raise EngineError(
            f"server {label!r}: llama_swap: {where} let {', '.join(placement.names[m] for m in chosen)} run at once, "
            f"which need {need / GIB:.1f} GiB of VRAM ({sizes} GiB) and {gpu} has {capacity / GIB:.1f} GiB; "
            f"llama-swap does not check memory (the last llama-server would fail to load): {fix}"
        )
