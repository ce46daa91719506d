"""What the accelerator sees in one forward pass: the only input a step-cost model gets."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BatchShape"]


@dataclass(frozen=True, slots=True)
class BatchShape:
    """Work of one forward pass (one engine iteration).

    A pass mixes prompt chunks (prefill) and one new token for each decoding sequence,
    as vLLM V1, llama.cpp's server and Ollama's runner all do.
    """

    num_prefill_tokens: int = 0
    """New prompt tokens computed in this pass, summed over all prompt chunks."""
    num_prefill_seqs: int = 0
    """Sequences contributing a prompt chunk to this pass."""
    prefill_context_tokens: int = 0
    """KV tokens already cached before the chunks (sum over chunks), read by chunk attention."""
    prefill_attention_pairs: float = 0.0
    """Query-key pairs of prompt attention: sum over chunks of chunk * (past + (chunk + 1) / 2)."""
    num_decode_seqs: int = 0
    """Sequences generating one token each in this pass."""
    num_context_tokens: int = 0
    """KV tokens attended by the decoding sequences (sum of their context lengths)."""

    @property
    def num_tokens(self) -> int:
        """Tokens fed through the GEMMs: prompt tokens plus one per decoding sequence."""
        return self.num_prefill_tokens + self.num_decode_seqs
