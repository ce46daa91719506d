"""Write a random-weight Hugging Face checkpoint of a config's shape, with a one-character tokenizer.

For measuring vLLM on the developers' machines without downloading a model: the weights are
random (they cost the same compute and memory traffic per token as trained ones) and the
tokenizer maps each normal token id to the same single character as
``calibration/pyserver/make_gguf.py`` (a word-level vocabulary of single characters, split
character by character, decoded by concatenation), so token counts are exact and detokenising
a streamed token is cheap and well defined.

    python calibration/sandbox/make_hf_model.py CONFIG.json OUT_DIR

Needs torch, transformers and tokenizers (vLLM brings them; not dependencies of servesim).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pyserver"))
from make_gguf import FIRST_NORMAL, piece


def main(config_path: str, out: str) -> None:
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    cfg = json.loads(Path(config_path).read_text())
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = LlamaConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "transformers_version")})
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out_dir)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for i in range(3, FIRST_NORMAL):
        vocab[f"<special_{i}>"] = i
    for i in range(FIRST_NORMAL, cfg["vocab_size"]):
        vocab[piece(i)] = i
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(out_dir)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
