"""Published micro-benchmarks (``calibration/data/published/microbenchmarks.json``): step times and latencies of named cases."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from calibration.measurements import (
    PUBLISHED_FILE,
    LatencyMeasurement,
    MeasurementError,
    Provenance,
    StepMeasurement,
    _is_validation,
    _join,
    _prefill_pairs,
    _round_half_up,
    _Rows,
)
from calibration.readers.llama_cpp import (
    _llama_prompt_passes,
    _lockstep_decode,
)
from calibration.readers.published_batched import BATCHED_CASES, read_batched_case
from calibration.readers.vllm import _latency_shapes
from sim.shapes import BatchShape

# --------------------------------------------------------------------------------------------
# Published numbers (calibration/data/published/microbenchmarks.json)
# --------------------------------------------------------------------------------------------

PUBLISHED_SKIPPED = {
    "chimeraforge_tr128_ollama_service_times": (
        "whole-request Ollama service times, prompt/output lengths unstated, models not in catalog"
    ),
    "llamacpp_issue3479_vllm_a100_2023": (
        "credibility C, approximate numbers, dtype / A100 variant / contexts unstated"
    ),
    "llamacpp_batched_bench_readme": "hardware not stated",
    "vllm_ci_h200_latency": "request level (a sum of passes): see read_published_latency",
    "vllm_ci_h100_latency": "request level (a sum of passes): see read_published_latency",
}
"""Published cases that give no step rows, and why (partial skips: see the data README)."""

_PUBLISHED_HW = {  # case id -> catalog hardware id
    "llamacpp_pr15131_4090_bf16_ubatch": "rtx-4090",
    "llamacpp_pr7676_4090_q4_0_ubatch": "rtx-4090",
    "llamacpp_pr23227_mi100_q4_0_ubatch": "mi100",
    "llamacpp_pr3545_v100_batched_bench": "v100-sxm2-32gb",
    "xiongjiedai_llama3_8b_rtx_3090": "rtx-3090",
    "xiongjiedai_llama3_8b_rtx_4080": "rtx-4080",
    "xiongjiedai_llama3_8b_rtx_4090": "rtx-4090",
    "xiongjiedai_llama3_8b_m1_max": "apple-m1-max",
    "xiongjiedai_llama3_8b_m2_ultra": "apple-m2-ultra",
    "xiongjiedai_llama2_a100_80gb": "a100-80gb-pcie",
    "xiongjiedai_llama2_h100_pcie": "h100-pcie",
    "xiongjiedai_llama2_rtx_4090": "rtx-4090",
    "xiongjiedai_llama2_m2_ultra": "apple-m2-ultra",
    "vllm_ci_h200_latency": "h200",
    "vllm_ci_h100_latency": "h100-sxm",
}
_HW_NOTES = {
    "a100-80gb-pcie": "A100 80GB: PCIe/SXM not stated, a100-80gb-pcie assumed",
    "v100-sxm2-32gb": "V100 variant not stated, v100-sxm2-32gb assumed",
    "h100-sxm": "8xH100 node: SXM assumed",
}
_MODEL_NOTES = {
    "llama-3.1-8b": "Llama 3 8B ('llama 8B') has the shapes of llama-3.1-8b",
    "llama-2-7b": "",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def _published_date(version: str) -> str:
    """ISO year(-month) from a published engine version ("2025-08 (...)", "May 2024", "2026")."""
    if m := re.match(r"\d{4}(-\d{2})?", version):
        return m.group(0)
    if (m := re.match(r"([A-Za-z]{3})[a-z]* (\d{4})", version)) and m[1].lower() in _MONTHS:
        return f"{m[2]}-{_MONTHS.index(m[1].lower()) + 1:02d}"
    return ""


def _load_cases(path: Path) -> dict[str, dict[str, Any]]:
    if _is_validation(path):
        raise MeasurementError(f"{path}: validation data; it must never be used for fitting")
    return {case["id"]: case for case in json.loads(path.read_text())["cases"]}


def _case_provenance(case: dict[str, Any], software: str, note: str = "") -> Provenance:
    """Provenance of a published number: the case URL, no file hash."""
    url, _, where = case["url"].partition(" (")
    hardware = _PUBLISHED_HW[case["id"]]
    notes = _join(
        f"case {case['id']} (credibility {case['credibility']}) via "
        "calibration/data/published/microbenchmarks.json",
        where.removesuffix(")"),
        _HW_NOTES.get(hardware, ""),
        note,
    )
    date = _published_date(case.get("engine_version", ""))
    return Provenance(url, "", hardware, software, date, notes)


def _case_rows(case: dict[str, Any], model: str, fmt: str, software: str, note: str = "") -> _Rows:
    prov = _case_provenance(case, software, _join(_MODEL_NOTES[model], note))
    return _Rows(
        model=model,
        hardware=prov.hardware,
        engine="llama.cpp",
        weight_format=fmt,
        threads=None,
        source=prov.source,
        sha256="",
        software=software,
        date=prov.date,
        prefix=prov.notes,
    )


def _ubatch_sweep(case: dict[str, Any]) -> list[StepMeasurement]:
    """pp512 at ubatch b: 512 // b full passes of b tokens with growing past; step = b / tok_s."""
    fmt = case["dtype"].lower()
    prompt = int(case["workload"]["test"].removeprefix("pp"))
    pr = case["url"].rstrip("/").rsplit("/", 1)[-1]
    out = []
    for column, rates in case["results"].items():
        version = f"PR #{pr}" if column.endswith("_pr") else f"master before PR #{pr}"
        date = _published_date(case["engine_version"])
        rows = _case_rows(case, "llama-3.1-8b", fmt, f"llama.cpp {version} ({date})")
        for b_str, tok_s in rates.items():
            b = int(b_str)
            passes = prompt // b
            mean_past = b * (passes - 1) / 2
            shape = BatchShape(
                b, 1, _round_half_up(mean_past), _prefill_pairs(b, 0) + b * mean_past
            )
            note = f"{column} ubatch {b}: mean of {passes} passes (past 0..{b * (passes - 1)})"
            out.append(rows(shape, b / tok_s, passes, note + ", step = b / tok_s"))
    return out


def _batched_bench_case(case: dict[str, Any]) -> list[StepMeasurement]:
    """Per B: one prompt pass (t = B*PP / S_PP) and one decode row (step = B / S_TG)."""
    pp, tg = case["workload"]["PP"], case["workload"]["TG"]
    note = "open-LLaMA 7B v2 has the shapes of llama-2-7b; 2023 build: one 512-token batch"
    software = f"llama.cpp batched-bench ({case['engine_version']})"
    rows = _case_rows(case, "llama-2-7b", case["dtype"].lower(), software, note)
    out = []
    for b_str, s_tg in case["results"]["S_TG_tok_s"].items():
        b = int(b_str)
        (prefill,) = _llama_prompt_passes(b, pp, 512, 512)
        t_pp = b * pp / case["results"]["S_PP_tok_s"][b_str]
        out.append(rows(prefill, t_pp, 1, f"B={b}: prompt pass, t = B*PP / S_PP"))
        out.append(rows(_lockstep_decode(b, pp, tg), b / s_tg, tg, f"B={b}: decode, B / S_TG"))
    return out


def _xiongjiedai_llama3(case: dict[str, Any]) -> list[StepMeasurement]:
    """llama-bench tg512 (decode, context 0..511 averaged) and pp512 (one pass)."""
    software = f"llama.cpp llama-bench ({case['engine_version']})"
    out = []
    for dtype, res in case["results"].items():
        rows = _case_rows(case, "llama-3.1-8b", dtype.lower(), software)
        if "tg512_tok_s" in res:
            shape = _lockstep_decode(1, 0, 512)
            out.append(rows(shape, 1 / res["tg512_tok_s"], 512, "tg512: decode, context 0..511"))
        if "pp512_tok_s" in res:
            (shape,) = _llama_prompt_passes(1, 512, 512, 512)
            out.append(rows(shape, 512 / res["pp512_tok_s"], 1, "pp512: one pass"))
    return out


def _xiongjiedai_llama2(case: dict[str, Any]) -> list[StepMeasurement]:
    """7B "eval" rates as decode rows with an assumed context (prompt/output lengths unstated)."""
    software = f"llama.cpp main ({case['engine_version']})"
    note = "eval rate: decode; assumed-context (prompt/output lengths unstated; 0..511 assumed)"
    out = []
    for key, res in case["results"].items():
        if key.startswith("7B_"):  # 70B: not in the catalog; prompt_eval: prompt length unstated
            rows = _case_rows(case, "llama-2-7b", key.removeprefix("7B_"), software)
            out.append(rows(_lockstep_decode(1, 0, 512), 1 / res["eval_tok_s"], 1, note))
    return out


def _published_builder(case_id: str) -> Callable[[dict[str, Any]], list[StepMeasurement]] | None:
    if case_id.endswith("_ubatch"):
        return _ubatch_sweep
    if case_id == "llamacpp_pr3545_v100_batched_bench":
        return _batched_bench_case
    if case_id.startswith("xiongjiedai_llama3"):
        return _xiongjiedai_llama3
    if case_id.startswith("xiongjiedai_llama2"):
        return _xiongjiedai_llama2
    if case_id in BATCHED_CASES:
        return read_batched_case
    return None


def read_published_steps(
    case_id: str | None = None, *, path: str | Path = PUBLISHED_FILE
) -> list[StepMeasurement]:
    """Step rows from published llama.cpp numbers (all usable cases, or one ``case_id``).

    * ubatch sweeps (PR #15131, #7676, #23227): pp512 at ubatch ``b`` = ``512 // b`` passes of
      ``b`` tokens with growing past; one row per (column, b): ``step_s = b / tok_s``, mean past.
    * batched-bench V100 (PR #3545): per B, one prompt pass and one averaged decode row.
    * XiongjieDai llama-bench tg512 / pp512: decode context 0..511 averaged; pp512 one pass.
      Llama-2 "eval" rates: decode rows with an assumed context (noted).

    Cases in :data:`PUBLISHED_SKIPPED` give MeasurementError when asked for by id.
    """
    cases = _load_cases(Path(path))
    if case_id is None:
        return [
            row
            for cid, case in cases.items()
            if (build := _published_builder(cid)) is not None
            for row in build(case)
        ]
    if case_id in PUBLISHED_SKIPPED:
        raise MeasurementError(f"{path}: case {case_id!r}: {PUBLISHED_SKIPPED[case_id]}")
    build = _published_builder(case_id)
    if case_id not in cases or build is None:
        raise MeasurementError(f"{path}: unknown case {case_id!r}; cases: {', '.join(cases)}")
    return build(cases[case_id])


def read_published_latency(
    case_id: str, *, path: str | Path = PUBLISHED_FILE
) -> list[LatencyMeasurement]:
    """Request-level rows for vLLM's CI latency test (8 prompts x 32 tokens, 128 outputs).

    Only Llama-3.1-8B TP1 is mapped (70B TP4 and Mixtral TP2 run tensor-parallel): one
    prefill pass of 8x32 tokens + 127 decode passes of 8 sequences; ``total_s`` = the mean.
    """
    cases = _load_cases(Path(path))
    if not case_id.startswith("vllm_ci_") or case_id not in cases:
        latency = [c for c in cases if c.startswith("vllm_ci_")]
        raise MeasurementError(f"{path}: no latency case {case_id!r}; cases: {', '.join(latency)}")
    case = cases[case_id]
    work = case["workload"]["latency_test"]
    prefill, decodes = _latency_shapes(
        work["batch_size"], work["input_tokens"], work["output_tokens"]
    )
    software = f"vLLM CI ({case['engine_version']})"
    prov = _case_provenance(case, software, "llama8B_tp1 mean; bf16 assumed (model default)")
    total_s = case["results"]["latency_ms"]["llama8B_tp1"]["mean"] * 1e-3
    return [
        LatencyMeasurement(
            total_s, prefill, decodes, "llama-3.1-8b", prov.hardware, "vllm", "bf16", prov
        )
    ]


