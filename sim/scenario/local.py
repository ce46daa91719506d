"""The models of a local server: several models on one Ollama box, and llama-swap (issue 20)."""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import Field, model_validator

from sim.scenario.base import Spec


class OllamaModelSpec(Spec):
    """One model an Ollama server holds among several (issue 20; docs/local_servers.md)."""

    model: str = Field(min_length=1)
    """Catalog model id (the server's quantization and options apply to it)."""
    weight: float = Field(gt=0)
    """Share of the requests that name this model (the weights of all models sum to 1)."""
    keep_alive_s: float | None = None
    """keep_alive the requests for this model set: idle seconds before unloading (negative:
    forever, 0: unload when idle; default: the server's keep_alive_s)."""
    request_num_ctx: list[int] | None = Field(default=None, min_length=1)
    """num_ctx values this model's clients send, one drawn per request (uniformly, from the seed):
    a request whose value differs from the loaded runner's reloads the model (ollama #4541);
    unset: the server's num_ctx for every request."""

    @model_validator(mode="after")
    def _contexts(self) -> Self:
        ctx = self.request_num_ctx or []
        if any(c < 16 for c in ctx) or len(set(ctx)) < len(ctx):
            raise ValueError(f"request_num_ctx: {ctx} must list distinct values >= 16; e.g. [4096, 8192]")
        return self


class SwapModelSpec(Spec):
    """One model behind llama-swap: its own llama-server process (``models.<id>.cmd``)."""

    model: str = Field(min_length=1)
    """Catalog model id (run with the server's llama.cpp options)."""
    weight: float = Field(gt=0)
    """Share of the requests that name this model (the weights of all models sum to 1)."""
    ttl_s: float = Field(ge=0, default=0.0)
    """``ttl``: idle seconds before llama-swap stops the process (0: never, the default)."""


class SwapGroupSpec(Spec):
    """One of llama-swap's ``groups``: which processes may run together (LOCAL_SERVERS.md §5)."""

    name: str = Field(min_length=1)
    """The group's id (``groups.<name>``)."""
    members: list[str]
    """Model ids of ``llama_swap.models`` in this group (each model in one group at most)."""
    swap: bool = True
    """true: one member runs at a time; false: all members may run together."""
    exclusive: bool = True
    """true: starting a member stops every other non-persistent group's processes."""
    persistent: bool = False
    """true: other groups never stop this group's processes."""


class SwapMatrixSpec(Spec):
    """llama-swap's matrix router (v202+): the sets of models allowed to run together."""

    sets: list[str] = Field(min_length=1)
    """Each an expression over model ids: ``a & b`` (together), ``a | b`` (either), parentheses;
    ``&`` binds tighter than ``|``. Expanded in the order written."""
    evict_costs: dict[str, float] = Field(default_factory=dict)
    """Cost of stopping a model (default 1); a swap picks the set with the least cost to evict."""


MATRIX_VERSION = 202
"""First llama-swap release with the matrix router."""


def expand_set(expr: str) -> list[list[str]]:
    """The model sets an expression allows (``a & (b | c)`` gives ``[[a, b], [a, c]]``); ValueError if malformed."""
    tokens = [t for t in re.split(r"\s*([&|()])\s*", expr.strip()) if t and not t.isspace()]
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def alt() -> list[list[str]]:
        nonlocal pos
        out = conj()
        while peek() == "|":
            pos += 1
            out = out + [s for s in conj() if s not in out]
        return out

    def conj() -> list[list[str]]:
        nonlocal pos
        out = atom()
        while peek() == "&":
            pos += 1
            rhs = atom()
            out = [a + [m for m in b if m not in a] for a in out for b in rhs]
        return out

    def atom() -> list[list[str]]:
        nonlocal pos
        tok = peek()
        if tok == "(":
            pos += 1
            out = alt()
            if peek() != ")":
                raise ValueError(f"{expr!r}: a '(' is not closed")
            pos += 1
            return out
        if tok is None or tok in "&|)":
            raise ValueError(f"{expr!r}: a model id is missing {'at the end' if tok is None else f'before {tok!r}'}")
        if " " in tok:
            raise ValueError(f"{expr!r}: {tok!r} is not one model id; join ids with & or |")
        pos += 1
        return [[tok]]

    result = alt()
    if pos != len(tokens):
        raise ValueError(f"{expr!r}: unexpected {tokens[pos]!r}")
    return result


def _release_number(version: str) -> int | None:
    digits = "".join(c for c in version if c.isdigit())
    return int(digits) if digits else None


class LlamaSwapSpec(Spec):
    """llama-swap in front of llama-server, one process per model (LOCAL_SERVERS.md §5)."""

    version: str = "v250"
    """llama-swap release: up to v217 the ProcessGroup swap (health polled every 5 s, one request at a
    time through a swap); from v218 the FIFO router (polled every 1 s; queued requests grouped by model)."""
    models: list[SwapModelSpec] = Field(min_length=1)
    """The models; those in no group are in the ``(default)`` group (swap: one at a time; exclusive)."""
    groups: list[SwapGroupSpec] = Field(default_factory=list)
    """llama-swap's ``groups`` (``routing: group``)."""
    routing: Literal["group", "matrix"] = "group"
    """``routing.router.use``: ``group`` (groups decide what runs together) or ``matrix`` (v202+)."""
    matrix: SwapMatrixSpec | None = None
    """The sets of the matrix router (with ``routing: matrix``)."""
    concurrency_limit: int = Field(ge=1, default=10)
    """``concurrencyLimit``: requests in flight per model before HTTP 429."""
    storage: str = "nvme-pcie4"
    """The disk the models load from (``sim/catalog/storage.yaml``)."""
    load_cap_gb_s: float = Field(gt=0, default=3.9)
    """Most GB/s a llama-server start reads (59 GB paged in in 15.1 s, llama.cpp #19191)."""
    startup_s: float = Field(ge=0, default=1.0)
    """Seconds to start llama-server besides reading the weights."""
    page_cache: bool = True
    """Model files stay in the host's page cache (LRU, the host CPU's RAM): a restart of a cached
    model only copies its weights to the GPU; false: every start reads the disk."""

    @model_validator(mode="after")
    def _mix(self) -> Self:
        total = sum(m.weight for m in self.models)
        if abs(total - 1.0) > 1e-9:
            fixed = ", ".join(f"{m.model}: {m.weight / total:.3g}" for m in self.models)
            raise ValueError(f"llama_swap.models: the weights sum to {total:g}, not 1; scale them ({fixed})")
        names = [m.model for m in self.models]
        if len(set(names)) < len(names):
            raise ValueError(f"llama_swap.models: {sorted({n for n in names if names.count(n) > 1})} listed twice; list each once")
        self._check_groups(names)
        self._check_matrix(names)
        return self

    def _check_groups(self, names: list[str]) -> None:
        seen: dict[str, str] = {}
        for i, group in enumerate(self.groups):
            where = f"llama_swap.groups.{i} ({group.name!r})"
            if [g.name for g in self.groups].count(group.name) > 1 or group.name == "(default)":
                raise ValueError(f"{where}.name: {group.name!r} is used twice or is reserved; give each group its own name")
            if not group.members:
                raise ValueError(f"{where}.members: the group has no members; list model ids of llama_swap.models "
                                 f"(e.g. members: [{names[0]}]) or drop the group")
            for m in group.members:
                if m not in names:
                    raise ValueError(f"{where}.members: {m!r} is not in llama_swap.models ({', '.join(names)}); "
                                     "add it to models or drop it from the group")
                if m in seen:
                    raise ValueError(f"{where}.members: {m!r} is already in group {seen[m]!r}; a model belongs "
                                     "to one group: drop it from one of them")
                seen[m] = group.name

    def _check_matrix(self, names: list[str]) -> None:
        if self.routing == "group":
            if self.matrix is not None:
                raise ValueError("llama_swap.matrix: given with routing: group; set routing: matrix or drop matrix")
            return
        release = _release_number(self.version)
        if release is not None and release < MATRIX_VERSION:
            raise ValueError(f"llama_swap.routing: matrix needs llama-swap v{MATRIX_VERSION} or later (version is "
                             f"{self.version!r}); set version: v{MATRIX_VERSION}+ or use groups")
        if self.matrix is None:
            raise ValueError("llama_swap.matrix: routing: matrix needs matrix: {sets: [...]}; "
                             f"e.g. sets: [\"{' | '.join(names)}\"]")
        if self.groups:
            raise ValueError("llama_swap.groups: the matrix router does not use groups; drop groups or set routing: group")
        covered: set[str] = set()
        for i, expr in enumerate(self.matrix.sets):
            try:
                sets = expand_set(expr)
            except ValueError as err:
                raise ValueError(f"llama_swap.matrix.sets.{i}: {err}; write ids joined by & and |, e.g. "
                                 f"\"{names[0]} & {names[-1]}\"") from None
            for m in {m for s in sets for m in s}:
                if m not in names:
                    raise ValueError(f"llama_swap.matrix.sets.{i}: {m!r} is not in llama_swap.models "
                                     f"({', '.join(names)}); add it to models or drop it from the set")
                covered.add(m)
        for m, cost in self.matrix.evict_costs.items():
            if m not in names:
                raise ValueError(f"llama_swap.matrix.evict_costs: {m!r} is not in llama_swap.models; use one of {', '.join(names)}")
            if not cost >= 0:
                raise ValueError(f"llama_swap.matrix.evict_costs.{m}: {cost} is negative; use a cost >= 0 (default 1)")
        missing = [m for m in names if m not in covered]
        if missing:
            raise ValueError(f"llama_swap.matrix.sets: {', '.join(missing)} in no set, so never served; add a set "
                             f"(e.g. \"{missing[0]}\")")
