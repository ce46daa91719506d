"""Shape of a decoder-only transformer; parameter counts, KV bytes and attention FLOPs derived from it."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    NonNegativeInt,
    PositiveInt,
    model_validator,
)

from sim.catalog.base import _Spec
from sim.catalog.formats import WeightFormat
from sim.catalog.moe import MlaSpec, MoeSpec

# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class ModelSpec(_Spec):
    """Shape of a decoder-only transformer, as given by its Hugging Face ``config.json``."""

    id: str = Field(min_length=1)
    """Catalog id, lower case with dashes, e.g. ``"llama-3.1-8b"``."""
    hf_name: str = Field(min_length=1)
    """Hugging Face repository, e.g. ``"meta-llama/Llama-3.1-8B-Instruct"``."""
    family: str = Field(min_length=1)
    """Architecture (the config's ``model_type``): ``llama``, ``qwen2``, ``mistral``, ..."""
    num_layers: PositiveInt
    """Transformer blocks (``num_hidden_layers``)."""
    hidden_size: PositiveInt
    """Width of the residual stream (``hidden_size``)."""
    num_heads: PositiveInt
    """Query heads per layer (``num_attention_heads``)."""
    num_kv_heads: PositiveInt
    """Key/value heads per layer (``num_key_value_heads``; equals ``num_heads`` for MHA)."""
    head_dim: PositiveInt
    """Width of one attention head (``head_dim``, else ``hidden_size // num_heads``)."""
    intermediate_size: PositiveInt
    """Width of the MLP hidden layer (``intermediate_size``; OPT: ``ffn_dim``)."""
    vocab_size: PositiveInt
    """Rows of the embedding table and of the lm_head."""
    tie_word_embeddings: bool
    """Whether the lm_head reuses the embedding matrix (stored once)."""
    attention_bias: bool = False
    """Whether the q/k/v projections carry biases (Qwen2)."""
    gated_mlp: bool = True
    """Gated MLP with gate, up and down matrices (SwiGLU/GeGLU); False: up and down only (OPT)."""
    linear_bias: bool = False
    """Whether every linear of a block (q, k, v, o and the MLP) carries a bias (OPT)."""
    norm_kind: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    """RMSNorm (a weight vector) or LayerNorm (weight and bias vectors)."""
    norms_per_layer: PositiveInt = 2
    """Norm modules per block: 2 for pre-norm blocks, 4 for Gemma 2 (pre and post norms)."""
    learned_position_embeddings: NonNegativeInt = 0
    """Rows of a learned absolute position table (OPT: max positions + 2); 0 with RoPE."""
    max_position_embeddings: PositiveInt
    """Longest context the model was configured for."""
    source: str = Field(min_length=1)
    """URL (or path) of the ``config.json`` the numbers come from."""
    notes: str = ""
    """Anything worth knowing about the entry."""
    aliases: tuple[str, ...] = ()
    """Other names accepted by :func:`get_model` (e.g. Ollama tags)."""
    moe: MoeSpec | None = None
    """Mixture-of-experts layers (:mod:`sim.catalog.moe`); None for a dense model."""
    mla: MlaSpec | None = None
    """Multi-head latent attention (DeepSeek-V2/V3); None for (grouped-query) multi-head attention."""
    sliding_window: PositiveInt | None = None
    """Window of the sliding-window layers (gpt-oss: 128); None when every layer attends fully."""
    sliding_layers: NonNegativeInt = 0
    """Layers that attend only the last ``sliding_window`` tokens (``layer_types`` entries
    ``sliding_attention``): their KV is bounded by the window, so neither the per-token KV bytes
    nor the attention FLOPs per context token count them."""

    @model_validator(mode="after")
    def _heads_group_evenly(self) -> ModelSpec:
        """Require query heads to split evenly over KV heads (grouped-query attention)."""
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"model {self.id!r}: num_heads={self.num_heads} is not a multiple of "
                f"num_kv_heads={self.num_kv_heads}"
            )
        if self.sliding_layers >= self.num_layers or (self.sliding_layers and self.sliding_window is None):
            raise ValueError(
                f"model {self.id!r}: sliding_layers={self.sliding_layers} needs a sliding_window and "
                f"fewer than num_layers={self.num_layers}"
            )
        if self.moe is not None and any(i >= self.num_layers for i in self.moe.dense_layers):
            raise ValueError(f"model {self.id!r}: moe.dense_layers names a layer >= num_layers={self.num_layers}")
        return self

    # ---------------------------------------------------------------- MoE / MLA arithmetic
    @property
    def _attention_matmul_params(self) -> int:
        """GEMM weights of one block's attention."""
        if self.mla is not None:
            return self.mla.attention_params(self.hidden_size, self.num_heads)
        return 2 * self.hidden_size * (self._q_width + self._kv_width)

    @property
    def num_moe_layers(self) -> int:
        """Layers whose MLP is routed experts (0 for a dense model)."""
        return 0 if self.moe is None else self.num_layers - len(set(self.moe.dense_layers))

    @property
    def expert_matmul_params(self) -> int:
        """GEMM weights of one routed expert (gate, up, down): 3 x hidden x expert width."""
        return 0 if self.moe is None else 3 * self.hidden_size * self.moe.expert_intermediate_size

    @property
    def expert_params(self) -> int:
        """All parameters of one routed expert (with its biases)."""
        if self.moe is None:
            return 0
        bias = 2 * self.moe.expert_intermediate_size + self.hidden_size if self.moe.expert_bias else 0
        return self.expert_matmul_params + bias

    @property
    def num_routed_expert_params(self) -> int:
        """Parameters of every routed expert of every MoE layer (memory, never all read at once)."""
        return 0 if self.moe is None else self.num_moe_layers * self.moe.num_experts * self.expert_params

    @property
    def _moe_layer_other_matmul(self) -> int:
        """Per-token GEMM weights of an MoE layer besides the routed experts: router and shared experts."""
        assert self.moe is not None
        return self.hidden_size * self.moe.num_experts + 3 * self.hidden_size * self.moe.shared_intermediate_size

    @property
    def num_active_params(self) -> int:
        """Parameters one token uses: all but the routed experts it is not sent to."""
        if self.moe is None:
            return self.num_params
        idle = self.num_moe_layers * (self.moe.num_experts - self.moe.experts_per_token) * self.expert_params
        return self.num_params - idle

    @property
    def _q_width(self) -> int:
        """Output width of the query projection."""
        return self.num_heads * self.head_dim

    @property
    def _kv_width(self) -> int:
        """Output width of the key (or value) projection."""
        return self.num_kv_heads * self.head_dim

    @property
    def _matmul_params_per_layer(self) -> int:
        """GEMM weights of one block: q, k, v, o and the MLP matrices."""
        attention = 2 * self.hidden_size * (self._q_width + self._kv_width)
        mlp_matrices = 3 if self.gated_mlp else 2
        return attention + mlp_matrices * self.hidden_size * self.intermediate_size

    @property
    def _bias_params_per_layer(self) -> int:
        """Bias vectors of one block."""
        total = 0
        if self.attention_bias or self.linear_bias:
            total += self._q_width + 2 * self._kv_width
        if self.linear_bias:
            mlp_in = (2 if self.gated_mlp else 1) * self.intermediate_size
            total += self.hidden_size + mlp_in + self.hidden_size
        return total

    @property
    def _params_per_norm(self) -> int:
        """Parameters of one norm module."""
        return (2 if self.norm_kind == "layernorm" else 1) * self.hidden_size

    @property
    def num_layer_params(self) -> int:
        """All parameters of the transformer blocks (matmuls, biases, norms; every expert)."""
        if self.moe is not None or self.mla is not None:
            return self._sparse_layer_params()
        per_layer = (
            self._matmul_params_per_layer
            + self._bias_params_per_layer
            + self.norms_per_layer * self._params_per_norm
        )
        return self.num_layers * per_layer

    @property
    def num_layer_matmul_params(self) -> int:
        """Per-token GEMM weights of all blocks (q, k, v, o, gate, up, down); no embedding/head.

        MoE: the weights one token multiplies (router, shared experts and its
        ``experts_per_token`` routed experts), i.e. the FLOPs, not the memory."""
        if self.moe is not None or self.mla is not None:
            return self._sparse_layer_matmul()
        return self.num_layers * self._matmul_params_per_layer

    def _dense_mlp_matmul(self) -> int:
        return (3 if self.gated_mlp else 2) * self.hidden_size * self.intermediate_size

    def _sparse_layer_params(self) -> int:
        """num_layer_params of an MoE and/or MLA model."""
        norms = self.norms_per_layer * self._params_per_norm + (self.mla.norm_params() if self.mla else 0)
        per_layer = self._attention_matmul_params + self._bias_params_per_layer + norms
        total = self.num_layers * per_layer
        dense = self.num_layers - self.num_moe_layers
        total += dense * self._dense_mlp_matmul()
        if self.moe is not None:
            router_bias = self.moe.num_experts if self.moe.expert_bias else 0
            total += self.num_moe_layers * (self._moe_layer_other_matmul + router_bias)
            total += self.num_routed_expert_params
        return total

    def _sparse_layer_matmul(self) -> int:
        """num_layer_matmul_params of an MoE and/or MLA model (active weights)."""
        total = self.num_layers * self._attention_matmul_params
        total += (self.num_layers - self.num_moe_layers) * self._dense_mlp_matmul()
        if self.moe is not None:
            active = self._moe_layer_other_matmul + self.moe.experts_per_token * self.expert_matmul_params
            total += self.num_moe_layers * active
        return total

    @property
    def num_lm_head_params(self) -> int:
        """Weights of the output projection, ``vocab * hidden`` (the embedding if tied)."""
        return self.vocab_size * self.hidden_size

    @property
    def num_embedding_params(self) -> int:
        """Token embedding table plus any learned position table."""
        return (self.vocab_size + self.learned_position_embeddings) * self.hidden_size

    @property
    def num_params(self) -> int:
        """Total parameters: embeddings, blocks, final norm and the lm_head if untied."""
        untied_head = 0 if self.tie_word_embeddings else self.num_lm_head_params
        return (
            self.num_embedding_params
            + self.num_layer_params
            + self._params_per_norm
            + untied_head
        )

    def kv_bytes_per_token(self, bytes_per_element: float) -> float:
        """KV-cache bytes one token occupies across all layers.

        Args:
            bytes_per_element: Bytes per cached element (see :func:`kv_dtype_bytes`).

        Returns:
            ``2 * num_layers * num_kv_heads * head_dim * bytes_per_element``.
        """
        if self.mla is not None:
            return self.num_full_attention_layers * self.mla.cache_width * bytes_per_element
        if self.sliding_layers:
            return 2 * self.num_full_attention_layers * self._kv_width * bytes_per_element
        return 2 * self.num_layers * self._kv_width * bytes_per_element

    @property
    def num_full_attention_layers(self) -> int:
        """Layers that attend (and cache) the whole context."""
        return self.num_layers - self.sliding_layers

    @property
    def attention_flops_per_pair(self) -> float:
        """FLOPs of QK^T and PV for one (query, key) pair, summed over full-attention layers
        (MLA: the absorbed form vLLM decodes with)."""
        if self.mla is not None:
            return self.num_full_attention_layers * self.mla.flops_per_pair(self.num_heads)
        if self.sliding_layers:
            return 4.0 * self.num_full_attention_layers * self._q_width
        return 4.0 * self.num_layers * self._q_width

    def weight_bytes(self, fmt: WeightFormat) -> float:
        """Bytes of all weights when stored in ``fmt``.

        Block weights and the final norm use ``fmt.bits_per_weight``; the token (and any
        position) embedding uses ``fmt.embedding_bits_per_weight`` and the lm_head
        ``fmt.lm_head_bits_per_weight``. A tied embedding is counted once, at the lm_head
        width.

        Args:
            fmt: The weight format.

        Returns:
            Size of the weights in bytes.
        """
        body = (self.num_layer_params + self._params_per_norm) * fmt.bits_per_weight
        if self.moe is not None and self.moe.expert_bits_per_weight is not None:
            experts = self.num_routed_expert_params
            body += experts * (self.expert_bits(fmt) - fmt.bits_per_weight)
        positions = self.learned_position_embeddings * self.hidden_size
        embedding = positions * fmt.embedding_bits_per_weight
        head = self.num_lm_head_params * fmt.lm_head_bits_per_weight
        if not self.tie_word_embeddings:
            embedding += self.num_lm_head_params * fmt.embedding_bits_per_weight
        return (body + embedding + head) / 8

    def expert_bits(self, fmt: WeightFormat) -> float:
        """Bits per routed-expert weight in ``fmt``: the checkpoint's own width (gpt-oss MXFP4)
        when that is narrower than the format's."""
        if self.moe is None or self.moe.expert_bits_per_weight is None:
            return fmt.bits_per_weight
        return min(fmt.bits_per_weight, self.moe.expert_bits_per_weight)

    def stage_params(self, start: int, stop: int) -> tuple[float, float, int]:
        """Layers ``[start, stop)`` (a pipeline stage): (parameters outside the routed experts,
        their per-token GEMM weights, number of MoE layers). Over all layers the first is
        ``num_layer_params - num_routed_expert_params`` and the second the active GEMM weights
        less the routed experts'."""
        count = stop - start
        if self.moe is None:
            moe_layers = 0
        else:
            dense = set(self.moe.dense_layers)
            moe_layers = sum(1 for i in range(start, stop) if i not in dense)
        active_experts = self.moe.experts_per_token * self.expert_matmul_params if self.moe else 0
        matmul_other = self.num_layer_matmul_params - self.num_moe_layers * active_experts
        params_other = self.num_layer_params - self.num_routed_expert_params
        if self.moe is None:
            return params_other * count / self.num_layers, matmul_other * count / self.num_layers, 0
        dense_mlp = (3 if self.gated_mlp else 2) * self.hidden_size * self.intermediate_size
        router = self.hidden_size * self.moe.num_experts + (self.moe.num_experts if self.moe.expert_bias else 0)
        moe_other = router + 3 * self.hidden_size * self.moe.shared_intermediate_size
        moe_other_matmul = self.hidden_size * self.moe.num_experts + 3 * self.hidden_size * self.moe.shared_intermediate_size
        n_dense = self.num_layers - self.num_moe_layers
        common = (params_other - n_dense * dense_mlp - self.num_moe_layers * moe_other) / self.num_layers
        common_mm = (matmul_other - n_dense * dense_mlp - self.num_moe_layers * moe_other_matmul) / self.num_layers
        dense_here = count - moe_layers
        params = count * common + dense_here * dense_mlp + moe_layers * moe_other
        matmul = count * common_mm + dense_here * dense_mlp + moe_layers * moe_other_matmul
        return params, matmul, moe_layers
