"""Write an F16 GGUF of random weights in the exact shape of a Llama-architecture HF config.

Used to measure llama-cpp-python on the developers' machine (``measure_overhead.py``) with the
same model shape as ``calibration/data/this_machine/`` (SmolLM2-135M). Random weights cost the
same compute and memory traffic per token as trained ones. The vocabulary is a placeholder SPM
vocabulary (``<unk>``, ``<s>``, ``</s>``, then one CJK/Hangul character per id, no byte tokens
(a sampled byte token would merge with its neighbours in the stream), no space prefix), so that a text of n such characters is exactly n tokens after BOS: prompts
of an exact length can be sent as text to the OpenAI server (:func:`piece`).

    python calibration/pyserver/make_gguf.py CONFIG.json OUT.gguf

Needs ``gguf`` and ``numpy`` (not dependencies of servesim).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gguf
import numpy as np

_RANGES = ((0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0x3400, 0x4DBF), (0x20000, 0x2A6DF))
FIRST_NORMAL = 3


def piece(token_id: int) -> str:
    """The one-character piece of a normal token id (>= FIRST_NORMAL)."""
    k = token_id - FIRST_NORMAL
    for lo, hi in _RANGES:
        if k <= hi - lo:
            return chr(lo + k)
        k -= hi - lo + 1
    raise ValueError(f"token id {token_id} beyond the placeholder vocabulary")


def main(config_path: str, out_path: str) -> None:
    cfg = json.loads(Path(config_path).read_text())
    h, ff, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    nh, nkv, hd, vocab = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"], cfg["vocab_size"]
    rng = np.random.default_rng(0)

    def w(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)

    wr = gguf.GGUFWriter(out_path, "llama")
    wr.add_name("random-weight " + config_path.rsplit("/", 1)[-1])
    wr.add_context_length(cfg["max_position_embeddings"])
    wr.add_embedding_length(h)
    wr.add_block_count(layers)
    wr.add_feed_forward_length(ff)
    wr.add_head_count(nh)
    wr.add_head_count_kv(nkv)
    wr.add_rope_dimension_count(hd)
    wr.add_rope_freq_base(cfg.get("rope_parameters", {}).get("rope_theta", 10000.0))
    wr.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    wr.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    wr.add_vocab_size(vocab)
    tokens = ["<unk>", "<s>", "</s>"]
    tokens += [piece(i) for i in range(FIRST_NORMAL, vocab)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.NORMAL] * (vocab - FIRST_NORMAL)
    wr.add_tokenizer_model("llama")
    wr.add_add_space_prefix(False)
    wr.add_token_list(tokens)
    wr.add_token_scores([0.0] * vocab)
    wr.add_token_types(types)
    wr.add_bos_token_id(1)
    wr.add_eos_token_id(2)
    wr.add_unk_token_id(0)
    wr.add_tensor("token_embd.weight", w(vocab, h))
    for i in range(layers):
        wr.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(h, dtype=np.float32))
        wr.add_tensor(f"blk.{i}.attn_q.weight", w(nh * hd, h))
        wr.add_tensor(f"blk.{i}.attn_k.weight", w(nkv * hd, h))
        wr.add_tensor(f"blk.{i}.attn_v.weight", w(nkv * hd, h))
        wr.add_tensor(f"blk.{i}.attn_output.weight", w(h, nh * hd))
        wr.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(h, dtype=np.float32))
        wr.add_tensor(f"blk.{i}.ffn_gate.weight", w(ff, h))
        wr.add_tensor(f"blk.{i}.ffn_up.weight", w(ff, h))
        wr.add_tensor(f"blk.{i}.ffn_down.weight", w(h, ff))
    wr.add_tensor("output_norm.weight", np.ones(h, dtype=np.float32))
    if not cfg.get("tie_word_embeddings"):
        wr.add_tensor("output.weight", w(vocab, h))
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


if __name__ == "__main__":
    main(*sys.argv[1:3])
