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
    num_spec_tokens: int = 0
    """Draft tokens verified in this pass (speculative decoding): each goes through the GEMMs,
    writes its KV and gets a row of logits, beside its sequence's sampled token."""
    spec_attention_pairs: float = 0.0
    """Query-key pairs of the draft tokens: a draft at position j of a sequence with context C
    attends C + j keys (the context's KV is read once per sequence, with its sampled token's)."""
    num_drafting_seqs: int = 0
    """Sequences that drafted tokens for this pass."""
    draft_depth: int = 0
    """Draft tokens per sequence the server is configured for (k; 0 when not speculating)."""
    drafting_context_tokens: int = 0
    """Context tokens of the drafting sequences (what the drafter attends)."""

    @property
    def num_tokens(self) -> int:
        """Tokens fed through the GEMMs: prompt tokens, one per decoding sequence, and drafts."""
        return self.num_prefill_tokens + self.num_decode_seqs + self.num_spec_tokens
