"""Cost profiles: engine efficiencies for the roofline model, with their provenance.

Profiles live as YAML under ``calibration/profiles/`` (hand-documented priors in
``priors.yaml``, fitted ones written by ``servesim calibrate``). Each names what it applies to
(engine, hardware id or kind, model, weight format; ``"*"`` matches anything); the most specific
match wins, so a GPU nobody measured still gets its hardware class's prior.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CostParams",
    "CostProfile",
    "decode_scale_table",
    "describe_choice",
    "load_profiles",
    "profile_kind",
    "select_for_threads",
    "select_profile",
]


class CostParams(BaseModel):
    """Efficiencies and overheads of one engine on one class of hardware."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    bandwidth_efficiency: float = Field(gt=0, le=1.5)
    """Achieved fraction of peak memory bandwidth when streaming weights and KV."""
    compute_efficiency: float = Field(gt=0, le=1.5)
    """Achieved fraction of the weight format's peak tensor throughput in GEMMs."""
    attention_efficiency: float = Field(gt=0, le=1.5)
    """Achieved fraction of the 16-bit peak in attention."""
    step_overhead_s: float = Field(ge=0)
    """Fixed seconds per physical forward pass (launches, scheduling, synchronisation)."""
    seq_overhead_s: float = Field(ge=0)
    """Seconds per sequence in a pass (sampling, detokenisation, bookkeeping)."""
    decode_batch_scale: dict[int, float] | None = None
    """Multiplier of the GEMM time of a pure decode pass of ``n`` sequences, by ``n`` (knots;
    1 at n = 1; interpolated in log2 n between knots, the last one beyond): llama.cpp's
    small-batch kernels do not follow the roofline (fitted on batched-bench rows)."""

    def decode_scale_table(self) -> tuple[float, ...]:
        """``decode_batch_scale`` as a dense table for n = 1..largest knot (empty when none)."""
        return decode_scale_table(self.decode_batch_scale)


def decode_scale_table(knots: dict[int, float] | None) -> tuple[float, ...]:
    """Dense multipliers for n = 1..max(knots): 1 at n = 1 unless given, linear in log2 n
    between knots."""
    if not knots:
        return ()
    points = sorted({1: 1.0, **{int(k): float(v) for k, v in knots.items()}}.items())
    table = []
    for n in range(1, points[-1][0] + 1):
        for (n0, f0), (n1, f1) in itertools.pairwise(points):
            if n0 <= n <= n1:
                w = (math.log2(n) - math.log2(n0)) / (math.log2(n1) - math.log2(n0))
                table.append(f0 + w * (f1 - f0))
                break
        else:
            table.append(points[0][1])
    return tuple(table)


class CostProfile(BaseModel):
    """Cost parameters plus what they apply to and where they come from."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    id: str
    """Unique name of the profile."""
    engine: str = "*"
    """vllm, llama.cpp, ollama, or * for any."""
    hardware: str = "*"
    """Hardware id (rtx-4090) or kind (consumer_gpu, datacenter_gpu, apple_silicon, cpu), or *."""
    model: str = "*"
    """Model id, or *."""
    weight_format: str = "*"
    """Weight format name, or *."""
    threads: int | None = None
    """CPU threads the measurement used (CPU profiles)."""
    params: CostParams
    """The fitted or documented parameters."""
    provenance: dict[str, Any] = Field(default_factory=dict)
    """Sources, hardware, software, date; for fits: input files with sha256, residuals."""

    def specificity(
        self, engine: str, hardware_id: str, hardware_kind: str, model: str, fmt: str, threads: int | None = None
    ) -> int:
        """Match score (higher = more specific), or -1 when the profile does not apply.

        A profile measured with a thread count applies to a server run with another one only
        when the server names none.
        """
        if threads is not None and self.threads is not None and threads != self.threads:
            return -1
        # hardware outweighs engine: a CPU's efficiencies say more than the engine that runs on it
        score = 0
        for want, have, weight in (
            (self.engine, engine, 8),
            (self.model, model, 2),
            (self.weight_format, fmt, 1),
        ):
            if want != "*" and want != have:
                return -1
            score += weight * (want != "*")
        if self.hardware == hardware_id:
            score += 32
        elif self.hardware == hardware_kind:
            score += 16
        elif self.hardware != "*":
            return -1
        return score + int(threads is not None and threads == self.threads)


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML has it: the fitted profiles carry every residual, and the
pure-Python loader takes ~0.8 s to read them all."""


def _profile_files() -> list[Path]:
    """Hand-written priors first, so that a fitted profile wins a tie of specificity."""
    root = resources.files("calibration") / "profiles"
    return sorted(Path(str(root)).glob("*.yaml"), key=lambda p: (p.name != "priors.yaml", p.name))


@lru_cache(maxsize=8)
def load_profiles(extra: tuple[str, ...] = ()) -> tuple[CostProfile, ...]:
    """All shipped profiles, plus those in ``extra`` files."""
    profiles: list[CostProfile] = []
    for path in [*_profile_files(), *(Path(p) for p in extra)]:
        data = yaml.load(path.read_text(), Loader=_YAML_LOADER)
        entries = data if isinstance(data, list) else data.get("profiles", [data])
        profiles.extend(CostProfile.model_validate(entry) for entry in entries)
    return tuple(profiles)


def select_profile(
    engine: str, hardware_id: str, hardware_kind: str, model: str, fmt: str, name: str | None = None,
    threads: int | None = None,
) -> CostProfile:
    """The named profile (an id or a file), else the most specific one that applies.

    Specificity: hardware id 32, hardware kind 16, engine 8, model 2, weight format 1; ties go to
    the profile loaded last (fitted files load after ``priors.yaml``).
    """
    if name is not None:
        path = Path(name)
        if path.suffix in (".yaml", ".yml") and path.is_file():
            try:
                return load_profiles((str(path),))[-1]
            except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError, TypeError, IndexError) as err:
                raise ValueError(f"{path} is not a cost profile file ({type(err).__name__}: {err}); "
                                 "write one like calibration/profiles/priors.yaml") from None
            except ValueError as err:  # pydantic: a field is wrong
                raise ValueError(f"{path} is not a valid cost profile: {err}") from None
        for profile in load_profiles():
            if profile.id == name:
                return profile
        ids = ", ".join(p.id for p in load_profiles())
        raise ValueError(f"unknown cost profile {name!r}; known: {ids}")
    scored = [
        (p.specificity(engine, hardware_id, hardware_kind, model, fmt, threads), i, p)
        for i, p in enumerate(load_profiles())
    ]
    scored = [s for s in scored if s[0] >= 0]
    if not scored:
        raise ValueError(f"no cost profile applies to {engine} on {hardware_id} ({hardware_kind})")
    return max(scored, key=lambda s: (s[0], s[1]))[2]


def select_for_threads(
    engine: str, hardware_id: str, hardware_kind: str, model: str, fmt: str, threads: int | None,
) -> CostProfile:
    """:func:`select_profile` when the best profiles were measured with a thread count (CPUs).

    ``threads`` picks the profile measured with that many threads; between two measured counts
    the parameters are interpolated linearly in the thread count (the batch table per knot both
    have); beyond them the nearest count is used. Unless a profile was measured with exactly
    ``threads``, the returned profile's ``provenance["selection"]`` says what was done (shown in
    the run's notes): no silent default.
    """
    plain = select_profile(engine, hardware_id, hardware_kind, model, fmt, None, threads)
    best = plain.specificity(engine, hardware_id, hardware_kind, model, fmt, threads)
    scored = [(p.specificity(engine, hardware_id, hardware_kind, model, fmt), p) for p in load_profiles()
              if p.threads is not None]
    top = max((s for s, _ in scored), default=-1)
    if top < 0 or top < best - 1:  # no thread-specific profile is as specific as the plain choice
        if threads is not None and plain.threads != threads:
            return _noted(plain, f"no profile measured with {threads} threads applies; using {plain.id}, which "
                                 f"does not depend on the thread count")
        return plain
    by_threads: dict[int, CostProfile] = {p.threads: p for s, p in scored if s == top and p.threads is not None}
    if threads is None:
        chosen = max(by_threads.items())[1]
        return _noted(chosen, f"threads not set: {chosen.id} (measured with {chosen.threads} threads; "
                              f"profiles exist for {sorted(by_threads)} threads)")
    if threads in by_threads:
        return by_threads[threads]
    lower = max((t for t in by_threads if t < threads), default=None)
    upper = min((t for t in by_threads if t > threads), default=None)
    if lower is None or upper is None:
        t = lower if upper is None else upper
        assert t is not None
        return _noted(by_threads[t], f"no profile measured with {threads} threads; using {by_threads[t].id} "
                                     f"(measured with {t}, the nearest of {sorted(by_threads)})")
    lo, hi = by_threads[lower], by_threads[upper]
    w = (threads - lower) / (upper - lower)
    values = {name: (1 - w) * getattr(lo.params, name) + w * getattr(hi.params, name)
              for name in type(lo.params).model_fields if name != "decode_batch_scale"}
    a, b = lo.params.decode_batch_scale or {}, hi.params.decode_batch_scale or {}
    table = {k: (1 - w) * a[k] + w * b[k] for k in a if k in b} or None
    base = lo.id.removesuffix(f"-t{lower}")
    note = f"interpolated between {lo.id} and {hi.id} at {threads} threads (weight {w:.2f} on t{upper})"
    return CostProfile(id=f"{base}-t{threads}-interpolated", engine=lo.engine, hardware=lo.hardware, model=lo.model,
                       weight_format=lo.weight_format, threads=threads,
                       params=CostParams(**values, decode_batch_scale=table),
                       provenance={"selection": note, "interpolated_from": [lo.id, hi.id]})


def _noted(profile: CostProfile, note: str) -> CostProfile:
    return profile.model_copy(update={"provenance": {**profile.provenance, "selection": note}})


def profile_kind(profile_id: str) -> str:
    """What a cost profile is, from its id: a fit to one group of measurements, a fit pooled over
    a hardware class, or a prior written by hand from published numbers."""
    if profile_id.startswith("fitted-prior-"):
        return "class prior (fitted over a hardware class)"
    if profile_id.startswith("fitted-"):
        return "fitted group"
    if profile_id.startswith("prior-"):
        return "hand prior"
    return "user profile"


def describe_choice(
    p: CostProfile, engine: str, hardware: Any, model: str, fmt: str, named: str | None, overrides: list[str],
) -> str:
    """Why ``p`` prices a server: named by the scenario, or the most specific match (and what it
    matches, and whether nothing was fitted for this hardware or model)."""
    if named is not None:
        why = f"named by the scenario (cost.profile: {named})"
    else:
        fit = [f"{what} {want}" for what, want in (
            ("engine", p.engine), ("hardware", p.hardware), ("model", p.model), ("format", p.weight_format))
            if want != "*"]
        missing = [what for what, want in (("hardware", p.hardware), ("model", p.model))
                   if want == "*" or (what == "hardware" and want != hardware.id)]
        why = (f"the most specific profile for {engine} on {hardware.id} ({hardware.kind}), {model}, {fmt}: "
               f"it matches {', '.join(fit) or 'anything'}")
        if missing:
            why += f"; none was fitted for this {' and '.join(missing)}"
    if overrides:
        why += f"; overridden by the scenario: {', '.join(overrides)}"
    return why
