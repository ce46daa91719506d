"""Mixture-of-experts and compressed-attention (MLA) fields of a model shape.

A :class:`~sim.catalog.models.ModelSpec` with ``moe`` set has routed experts in its MoE layers
(PARALLELISM.md §4.1): its memory counts every expert, its FLOPs only the ``experts_per_token``
active ones, and the cost model prices each step's weight traffic from the expected number of
distinct experts the step touches. ``mla`` replaces grouped-query attention by DeepSeek's
multi-head latent attention, whose cache holds one latent of ``kv_lora_rank + qk_rope_head_dim``
values per token and layer.
"""

from __future__ import annotations

from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from sim.catalog.base import _Spec

__all__ = ["MlaSpec", "MoeSpec"]


class MoeSpec(_Spec):
    """Routed (and shared) experts of a mixture-of-experts model."""

    num_experts: PositiveInt
    """Routed experts per MoE layer (``num_local_experts`` / ``num_experts`` / ``n_routed_experts``)."""
    experts_per_token: PositiveInt
    """Experts each token is routed to (``num_experts_per_tok`` / ``experts_per_token``)."""
    expert_intermediate_size: PositiveInt
    """Hidden width of one expert's gated MLP (Mixtral/gpt-oss ``intermediate_size``; Qwen/DeepSeek
    ``moe_intermediate_size``)."""
    shared_intermediate_size: NonNegativeInt = 0
    """Total hidden width of the always-active shared experts (DeepSeek ``n_shared_experts x
    moe_intermediate_size``; Qwen2-MoE ``shared_expert_intermediate_size``); 0 for none."""
    dense_layers: tuple[NonNegativeInt, ...] = ()
    """Layer indices whose MLP is dense (``intermediate_size``): DeepSeek's first
    ``first_k_dense_replace`` layers, Qwen's ``mlp_only_layers`` and off-step layers."""
    expert_bias: bool = False
    """Experts carry biases (gpt-oss: gate/up 2 x inter, down hidden) and the router a bias."""
    expert_bits_per_weight: PositiveFloat | None = None
    """Bits per expert weight the checkpoint ships with whatever the serving format (gpt-oss:
    MXFP4 = 4.25, E2M1 + one E8M0 scale per 32); the format's width applies when narrower."""

    @model_validator(mode="after")
    def _k_at_most_e(self) -> MoeSpec:
        if self.experts_per_token > self.num_experts:
            raise ValueError(
                f"experts_per_token={self.experts_per_token} exceeds num_experts={self.num_experts}"
            )
        return self


class MlaSpec(_Spec):
    """DeepSeek-V2/V3 multi-head latent attention (``kv_lora_rank`` etc. of the config)."""

    kv_lora_rank: PositiveInt
    """Width of the compressed KV latent (512)."""
    qk_rope_head_dim: PositiveInt
    """Decoupled RoPE key width, cached beside the latent (64)."""
    qk_nope_head_dim: PositiveInt
    """Per-head query/key width without RoPE (128)."""
    v_head_dim: PositiveInt
    """Per-head value width (128)."""
    q_lora_rank: PositiveInt | None = None
    """Width of the compressed query (DeepSeek-V3 1536); None: queries projected directly (V2-Lite)."""

    @property
    def cache_width(self) -> int:
        """Values cached per token and layer: ``kv_lora_rank + qk_rope_head_dim`` (no K/V pair)."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    def attention_params(self, hidden: int, heads: int) -> int:
        """GEMM weights of one MLA block: q (direct or via the q latent), kv_a, kv_b and o."""
        q_head = self.qk_nope_head_dim + self.qk_rope_head_dim
        if self.q_lora_rank is None:
            q = hidden * heads * q_head
        else:
            q = hidden * self.q_lora_rank + self.q_lora_rank * heads * q_head
        kv_a = hidden * self.cache_width
        kv_b = self.kv_lora_rank * heads * (self.qk_nope_head_dim + self.v_head_dim)
        return q + kv_a + kv_b + heads * self.v_head_dim * hidden

    def norm_params(self) -> int:
        """The latent norms: kv_a (and q_a when queries are compressed)."""
        return self.kv_lora_rank + (self.q_lora_rank or 0)

    def flops_per_pair(self, heads: int) -> float:
        """Per-layer FLOPs of one (query, key) pair in vLLM's absorbed MLA decode: scores over the
        latent and RoPE part, values over the latent."""
        return 2.0 * heads * self.cache_width + 2.0 * heads * self.kv_lora_rank

