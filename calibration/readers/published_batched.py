"""Published llama-batched-bench tables by prompt length (llama.cpp's benches/dgx-spark.md format).

A case lists ``T_PP_s[PP][B]`` (B prompts of PP tokens in ``n_ubatch``-token passes) and
``T_TG_s[PP][B]`` (B sequences generating TG tokens in lock-step after their prompts), plus
llama-bench ``pp2048``/``tg32`` at depths (``llama_bench_tok_s``). Each becomes step rows:
the prompt passes share ``T_PP`` by tokens; the decode row is the mean of TG passes with the
context growing from PP; llama-bench ``pp2048@dD`` is one 2048-token pass on D cached tokens and
``tg32@dD`` 32 single-sequence passes from context D. The file holds verbatim copies of shared
cases (``calibration/data/published/batched_bench_gpu.json``).
"""

from __future__ import annotations

import re
from typing import Any

from calibration.measurements import StepMeasurement, _join, _Rows, _split_by_tokens
from calibration.readers.llama_cpp import _llama_prompt_passes, _lockstep_decode

__all__ = ["BATCHED_CASES", "read_batched_case"]

BATCHED_CASES = {  # case id -> (catalog hardware, catalog model, weight format, model note)
    "llamacpp_benches_dgx_spark_qwen25_coder_7b_q8_0": (
        "dgx-spark", "qwen2.5-coder-7b", "q8_0", "Qwen2.5-Coder-7B Q8_0 GGUF (7.62 B params)"),
}
FILE = "calibration/data/published/batched_bench_gpu.json"


def _ubatch(case: dict[str, Any]) -> int:
    m = re.search(r"-ub (\d+)", case["engine_flags"])
    return int(m.group(1)) if m else 512


def read_batched_case(case: dict[str, Any]) -> list[StepMeasurement]:
    """Step rows of one published batched-bench case (see the module docstring)."""
    hardware, model, fmt, model_note = BATCHED_CASES[case["id"]]
    url = case["url"].split(" ")[0]
    software = f"llama.cpp {case['engine_version']}"
    date = re.match(r".*?(\d{4}-\d{2})", case["engine_version"])
    rows = _Rows(model=model, hardware=hardware, engine="llama.cpp", weight_format=fmt, threads=None, source=url,
                 sha256="", software=software, date=date.group(1) if date else "",
                 prefix=_join(f"case {case['id']} (credibility {case['credibility']}) via {FILE}", model_note,
                              "flash attention on"))
    ub = _ubatch(case)
    tg = int(case["workload"]["TG"])
    res = case["results"]
    out = []
    for pp_text, by_batch in res["T_PP_s"].items():
        pp = int(pp_text)
        for b_text, t_pp in by_batch.items():
            b = int(b_text)
            passes = _llama_prompt_passes(b, pp, ub, ub)
            for i, (shape, t) in enumerate(zip(passes, _split_by_tokens(passes, float(t_pp)), strict=True)):
                out.append(rows(shape, t, 1, f"PP={pp} B={b}: prompt pass {i + 1}/{len(passes)} (token share of T_PP)"))
            t_tg = float(res["T_TG_s"][pp_text][b_text])
            out.append(rows(_lockstep_decode(b, pp, tg), t_tg / tg, tg, f"PP={pp} B={b}: {tg} lock-step decode passes"))
    for test, tok_s in res.get("llama_bench_tok_s", {}).items():
        name, _, depth_text = test.partition("@d")
        depth = int(depth_text or 0)
        n = int(name[2:])
        if name.startswith("pp"):
            (shape,) = _llama_prompt_passes(1, n, ub, ub, past=depth)
            out.append(rows(shape, n / float(tok_s), 1, f"llama-bench {test}: one pass"))
        else:
            out.append(rows(_lockstep_decode(1, depth, n), 1 / float(tok_s), n, f"llama-bench {test}: decode"))
    return out
