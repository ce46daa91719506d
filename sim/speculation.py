"""Speculative decoding of a server spec: draft policy, acceptance, drafter cost and memory.

vLLM's ``speculative_config`` (``method`` ngram / eagle / eagle3 / draft_model,
``num_speculative_tokens``) and llama.cpp's ``--model-draft`` / ``--draft-max`` /
``--draft-min`` become a :class:`~sim.servers.speculative.SpecPolicy` (what the scheduler does
each step) and a :class:`~sim.servers.speculative.DraftedStepCost` (the drafter priced by the
same roofline as the target, with the target's fitted efficiencies, on the same hardware):

* ``ngram`` drafts by a string match on the CPU: free;
* ``eagle`` / ``eagle3`` heads are priced as one decoder layer of the target's shape plus its
  LM head (EAGLE-1 and EAGLE-3 heads have one layer; EAGLE-3's smaller draft vocabulary is not
  modelled, which over-prices its head a little);
* ``draft_model`` / ``--model-draft``: the named catalog model, in the server's weight format.

Zero draft tokens (``num_speculative_tokens: 0``, ``draft_max: 0``) is no speculation: the
server is exactly the one without the option (tested bit for bit).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from sim.catalog import ModelSpec, WeightFormat, get_model
from sim.catalog.speculative import AcceptanceDefault, acceptance_default
from sim.costs import RooflineStepCost, StepCost
from sim.scenario import LlamaCppSpec, SpeculativeConfig
from sim.servers.speculative import DraftedStepCost, SpecPolicy, mean_tokens_per_step

__all__ = ["Drafting", "accept_at_least", "drafted_cost", "llama_cpp_drafting", "vllm_drafting"]

DRAFT_MIN_ZERO_BUILD = 4800
"""Approximate first llama.cpp build whose ``--draft-min`` defaults to 0 (5 before) and
``--draft-p-min`` to 0.75 (0.9 before): the change is bracketed only by the copies vendored in
Ollama v0.5.7 (Jan 2025) and v0.6.0 (Mar 2025); an assumption."""
VLLM_DRAFT_PASS_OVERHEAD_S = 0.44e-3
"""Fixed seconds of one drafter pass inside a vLLM step (the engine's per-step CPU work is paid
once per step, not per drafter pass). Fitted: vllm-project/vllm issue #20780 (EAGLE-3 head on
Llama-3.1-8B-Instruct, MT-Bench, batch 1, V1, 2025-07; H100 assumed, as in the same author's
PR #16937) gives a step time per draft token of 0.99 ms (TPOT x acceptance length: 10.2, 12.5,
15.2 ms at k = 2, 4, 7); this roofline prices the head's pass at 0.55 ms on an H100 with the
fitted vLLM profile, which leaves 0.44 ms."""
VLLM_SPEC_STEP_OVERHEAD_S = 1.13e-3
"""Fixed seconds a speculative vLLM step adds beside its drafter passes: the intercept of the
same fit (10.2 - 2 x 1.0 = 8.2 ms at k = 0 against a vanilla TPOT of 7.07 ms)."""
LLAMA_CPP_DRAFT_MAX = 16
"""``--draft-max`` default from Jan 2025 to at least Sep 2025 (the 2026 refactor's default of 3
is not pinned to a build: give ``draft_max`` for those builds)."""


@dataclass(frozen=True)
class Drafting:
    """A resolved speculative setup: the scheduler's policy and what prices the drafter."""

    policy: SpecPolicy
    method: str
    drafter: ModelSpec | None
    """The model whose passes draft (None: n-gram, free)."""
    per_sequence: bool
    """Each sequence drafts alone, one single-sequence pass per token (llama.cpp slots)."""
    notes: dict[str, object] = field(default_factory=dict)

    def extra_weight_bytes(self, fmt: WeightFormat) -> float:
        """Weights the drafter adds (an EAGLE head: its layer; it shares the target's embedding)."""
        if self.drafter is None:
            return 0.0
        if self.method.startswith("eagle"):
            return self.drafter.num_layer_params * fmt.bits_per_weight / 8
        return self.drafter.weight_bytes(fmt)


def accept_at_least(
    k: int, rate: float | None, rates: list[float] | None, default: AcceptanceDefault
) -> tuple[float, ...]:
    """``P(A >= i)`` for ``i = 1..k`` from an i.i.d. ``rate``, per-position ``rates`` (vLLM's
    metric), or the method's published default; positions past a given list continue with its
    last conditional rate."""
    if rate is None and rates is None:
        rate, rates = default.acceptance_rate, default.accept_at_least
    if rates is None:
        assert rate is not None
        return tuple(rate**i for i in range(1, k + 1))
    out = list(rates[:k])
    last = rates[-1] / rates[-2] if len(rates) >= 2 and rates[-2] > 0 else rates[-1]
    while len(out) < k:
        out.append(out[-1] * last)
    return tuple(out)


def eagle_head(model: ModelSpec) -> ModelSpec:
    """An EAGLE draft head for ``model``: one decoder layer of its shape, with its LM head."""
    return model.model_copy(update={"id": f"{model.id}-eagle-head", "num_layers": 1})


def _notes(prefix: str, policy: SpecPolicy, method: str, given: bool, default: AcceptanceDefault) -> dict[str, object]:
    return {
        f"{prefix}method": method,
        f"{prefix}num_tokens": policy.num_tokens,
        f"{prefix}accept_at_least": [round(p, 4) for p in policy.accept_at_least],
        f"{prefix}proposal_rate": policy.draft_probability,
        f"{prefix}mean_tokens_per_step": round(  # (a step without a draft gives one token)
            1 + policy.draft_probability * (mean_tokens_per_step(policy.accept_at_least) - 1), 4),
        f"{prefix}acceptance_source": "scenario" if given else default.source,
    }


def vllm_drafting(config: SpeculativeConfig, model: ModelSpec) -> Drafting | None:
    """vLLM V1: k drafts per decoding request, ``k`` KV lookahead slots for model drafters."""
    k = config.num_speculative_tokens
    if k == 0:
        return None
    method = config.drafting_method
    default = acceptance_default(method)
    survival = accept_at_least(k, config.acceptance_rate, config.acceptance_rates, default)
    proposal = config.proposal_rate if config.proposal_rate is not None else default.proposal_rate
    drafter = None if method == "ngram" else eagle_head(model) if method.startswith("eagle") else get_model(config.model or "")
    rows = tuple((a, b, c) for a, b, c in config.num_speculative_tokens_per_batch_size or ())
    policy = SpecPolicy(k, survival, proposal, lookahead=0 if method == "ngram" else k, tokens_by_batch=rows)
    given = config.acceptance_rate is not None or config.acceptance_rates is not None
    notes = _notes("spec_", policy, method, given, default)
    if config.model:
        notes["spec_model"] = config.model
    if rows:
        notes["spec_tokens_by_batch"] = [list(row) for row in rows]
    return Drafting(policy, method, drafter, False, notes)


def llama_cpp_drafting(spec: LlamaCppSpec, build: int) -> Drafting | None:
    """llama-server ``--model-draft``: per-slot drafts of up to ``--draft-max`` tokens."""
    if spec.model_draft is None:
        return None
    k = spec.draft_max if spec.draft_max is not None else LLAMA_CPP_DRAFT_MAX
    if k == 0:
        return None
    old = build < DRAFT_MIN_ZERO_BUILD
    draft_min = spec.draft_min if spec.draft_min is not None else (5 if old else 0)
    default = acceptance_default("draft_model")
    survival = accept_at_least(k, spec.draft_acceptance_rate, spec.draft_acceptance_rates, default)
    policy = SpecPolicy(k, survival, 1.0, lookahead=0, min_tokens=draft_min)
    given = spec.draft_acceptance_rate is not None or spec.draft_acceptance_rates is not None
    notes = _notes("spec_", policy, "draft_model", given, default)
    notes.update({
        "spec_model": spec.model_draft, "draft_min": draft_min,
        "draft_p_min": f"{0.9 if old else 0.75} in this build, not modelled: every draft runs to draft_max",
    })
    return Drafting(policy, "draft_model", get_model(spec.model_draft), True, notes)


def drafted_cost(cost: StepCost | None, drafting: Drafting, weights_read: float, kv_bytes: float) -> StepCost | None:
    """The server's pass cost with the drafter's passes added (roofline costs: a constant or
    linear cost prices a pass whatever it holds, drafts included)."""
    if cost is None or drafting.drafter is None or not isinstance(cost, RooflineStepCost):
        return cost
    d = drafting.drafter
    per_sequence = drafting.per_sequence  # llama.cpp: every draft token is its own llama_decode
    drafter = dataclasses.replace(
        cost,
        step_overhead_s=cost.step_overhead_s if per_sequence else VLLM_DRAFT_PASS_OVERHEAD_S,
        weight_bytes_per_pass=weights_read,
        kv_bytes_per_token=kv_bytes,
        layer_matmul_params=d.num_layer_matmul_params,
        lm_head_params=d.num_lm_head_params,
        attention_flops_per_pair=d.attention_flops_per_pair,
        lm_head_on_every_prompt_token=False,
    )
    return DraftedStepCost(cost, drafter, per_sequence, 0.0 if per_sequence else VLLM_SPEC_STEP_OVERHEAD_S)
