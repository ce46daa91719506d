"""Tests of sim.traces: the shipped public traces, malformed files, fixtures, transform()."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from sim.traces import (
    LengthTable,
    Trace,
    TraceError,
    detect_format,
    read_length_table,
    read_trace,
)

TRACES = Path(__file__).resolve().parents[1] / "data" / "traces"
AZURE_CODE = TRACES / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv"
AZURE_CONV = TRACES / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
MOONCAKE_CONV = TRACES / "mooncake_fast25" / "conversation_trace.jsonl"
MOONCAKE_SYN = TRACES / "mooncake_fast25" / "synthetic_trace.jsonl"
VIDUR_CODE = TRACES / "vidur_splitwise" / "splitwise_code.csv"
VIDUR_CONV = TRACES / "vidur_splitwise" / "splitwise_conv.csv"
SHAREGPT = TRACES / "length_distributions" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv"
ARXIV = (TRACES / "length_distributions"
         / "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv")


# --------------------------------------------------------------------------- shipped files

# (file, format, rows, span in seconds) as published in data/traces/README.md.
SHIPPED = [
    (AZURE_CODE, "azure2023", 8_819, 3435.948056),
    (AZURE_CONV, "azure2023", 19_366, 3501.721937),
    (MOONCAKE_CONV, "mooncake", 12_031, 3536.999),
    (MOONCAKE_SYN, "mooncake", 3_993, 1022.025),
    (VIDUR_CODE, "vidur", 8_819, 3435.948056),
    (VIDUR_CONV, "vidur", 19_366, 3501.721937),
]


@pytest.mark.parametrize(("path", "fmt", "rows", "span"), SHIPPED, ids=lambda v: str(v)[-30:])
def test_shipped_trace_rows_and_span(path: Path, fmt: str, rows: int, span: float) -> None:
    assert detect_format(path) == fmt
    trace = read_trace(path)
    assert trace.format == fmt
    assert len(trace) == rows
    assert trace.arrival_s is not None and trace.arrival_s.dtype == np.float64
    assert trace.arrival_s[0] == 0.0
    assert np.all(np.diff(trace.arrival_s) >= 0)
    assert trace.duration_s == pytest.approx(span, abs=1e-6)
    assert trace.mean_rate_per_s == pytest.approx(rows / span)
    assert trace.prompt_tokens.dtype == np.int64 and trace.output_tokens.dtype == np.int64
    assert trace.prompt_tokens.min() >= 1 and trace.output_tokens.min() >= 1
    assert trace.metadata["dropped_rows"] == 0


# (file, (prompt mean, p50, p99), (output mean, p50, p99)) from data/traces/README.md;
# percentiles are the smallest value with at least that share of rows at or below it.
STATS = [
    (AZURE_CODE, (2048, 1469, 7436), (28, 13, 252)),
    (AZURE_CONV, (1155, 1020, 4142), (211, 129, 601)),
    (MOONCAKE_CONV, (12035, 6909, 85401), (343, 350, 1120)),
    (MOONCAKE_SYN, (15325, 11587, 66458), (149, 69, 769)),
    (VIDUR_CODE, (2048, 1469, 7436), (28, 13, 252)),
    (SHAREGPT, (2340, 1730, 7434), (439, 415, 998)),
    (ARXIV, (2588, 2730, 3934), (291, 167, 3273)),
]


def _stats(values: np.ndarray) -> tuple[float, float, float]:
    """Mean, p50 and p99 (method 'higher', as in the README)."""
    p50, p99 = np.percentile(values, [50, 99], method="higher")
    return float(values.mean()), float(p50), float(p99)


@pytest.mark.parametrize(("path", "prompt", "output"), STATS, ids=lambda v: str(v)[-30:])
def test_shipped_token_stats(path: Path, prompt: tuple, output: tuple) -> None:
    table = read_length_table(path)
    for values, expected in ((table.prompt_tokens, prompt), (table.output_tokens, output)):
        mean, p50, p99 = _stats(values)
        assert abs(mean - expected[0]) <= 0.5
        assert (p50, p99) == (expected[1], expected[2])


def _readme_sha256() -> dict[str, str]:
    """File name -> sha256, from the table in data/traces/README.md."""
    text = (TRACES / "README.md").read_text(encoding="utf-8")
    found = re.findall(r"^\|\s*`([^`]+)`\s*\|.*\|\s*`([0-9a-f]{64})`\s*\|\s*$", text, re.M)
    return dict(found)


def test_shipped_files_match_readme_sha256() -> None:
    published = _readme_sha256()
    shipped = sorted(p.relative_to(TRACES).as_posix() for p in TRACES.rglob("*")
                     if p.is_file() and p.name != "README.md")
    assert len(shipped) == 13
    assert sorted(published) == shipped
    for name, digest in published.items():
        assert hashlib.sha256((TRACES / name).read_bytes()).hexdigest() == digest, name


def test_azure_file_without_trailing_newline_keeps_last_row() -> None:
    assert not AZURE_CODE.read_bytes().endswith(b"\n")
    trace = read_trace(AZURE_CODE)
    # last line: 2023-11-16 19:14:19.9280160,549,173
    assert (trace.prompt_tokens[-1], trace.output_tokens[-1]) == (549, 173)
    assert trace.arrival_s is not None
    assert trace.arrival_s[-1] == pytest.approx(3435.948056, abs=1e-9)
    assert trace.metadata["start_time"].startswith("2023-11-16T18:17:03.97996")


@pytest.mark.parametrize(("azure", "vidur"), [(AZURE_CODE, VIDUR_CODE), (AZURE_CONV, VIDUR_CONV)])
def test_vidur_equals_azure_column_for_column(azure: Path, vidur: Path) -> None:
    a, v = read_trace(azure), read_trace(vidur)
    np.testing.assert_array_equal(a.prompt_tokens, v.prompt_tokens)
    np.testing.assert_array_equal(a.output_tokens, v.output_tokens)
    assert a.arrival_s is not None and v.arrival_s is not None
    np.testing.assert_allclose(a.arrival_s, v.arrival_s, rtol=0, atol=1e-6)


def test_mooncake_hash_ids_cover_prompts() -> None:
    trace = read_trace(MOONCAKE_CONV)
    assert trace.hash_block_tokens == 512 and trace.hash_ids is not None
    assert len(trace.hash_ids) == len(trace)
    needed = -(-trace.prompt_tokens // 512)
    assert [len(h) for h in trace.hash_ids] == needed.tolist()
    assert trace.hash_ids[0].dtype == np.int64
    assert trace.hash_ids[0][:3].tolist() == [0, 1, 2] and trace.hash_ids[1][0] == 0


def test_read_length_table_sharegpt() -> None:
    table = read_length_table(SHAREGPT)
    assert isinstance(table, LengthTable)
    assert len(table) == 30_731
    assert abs(table.prompt_tokens.mean() - 2340) <= 1
    assert abs(table.output_tokens.mean() - 439) <= 1
    # rows stay paired: the first row of the file is 74,918,...
    assert (table.prompt_tokens[0], table.output_tokens[0]) == (74, 918)


def test_read_length_table_accepts_a_trace() -> None:
    table = read_length_table(MOONCAKE_SYN)
    trace = read_trace(MOONCAKE_SYN)
    np.testing.assert_array_equal(table.prompt_tokens, trace.prompt_tokens)
    np.testing.assert_array_equal(table.output_tokens, trace.output_tokens)


def test_length_table_is_not_a_trace() -> None:
    with pytest.raises(TraceError, match="read_length_table"):
        read_trace(SHAREGPT)


# --------------------------------------------------------------------------- malformed files

AZ = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
AZ_ROW = "2023-11-16 18:17:0{}.9799600,100,10\n"
AZ_OK = AZ + "".join(AZ_ROW.format(i) for i in range(3))
VI = "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,10,5\n0.5,20,6\n"
MC_OK = '{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [0, 1]}\n'

# (file name, content, expected line, a word the message must contain)
MALFORMED = [
    ("az_int.csv", AZ_OK + "2023-11-16 18:17:04.0,12x,3\n", 5, "ContextTokens"),
    ("az_float.csv", AZ_OK + "2023-11-16 18:17:04.0,12.5,3\n", 5, "not an integer"),
    ("az_neg.csv", AZ + AZ_ROW.format(0) + "2023-11-16 18:17:01.0,-3,3\n", 3, "negative"),
    ("az_missing.csv", AZ_OK + "2023-11-16 18:17:04.0,12\n", 5, "2 fields"),
    ("az_empty_cell.csv", AZ_OK + "2023-11-16 18:17:04.0,,4", 5, "ContextTokens"),
    ("az_time.csv", AZ + AZ_ROW.format(0) + "16/11/2023 18:17,4,4\n", 3, "TIMESTAMP"),
    ("az_date.csv", AZ + AZ_ROW.format(0) + "2023-02-30 18:17:01.0,4,4\n", 3, "does not exist"),
    ("az_hour.csv", AZ + AZ_ROW.format(0) + "2023-11-16 25:17:01.0,4,4\n", 3, "time of day"),
    ("az_back.csv", AZ + AZ_ROW.format(5) + AZ_ROW.format(6) + AZ_ROW.format(2), 4, "backwards"),
    ("az_header.csv", "time,prompt,output\n1,2,3\n", 1, "TIMESTAMP,ContextTokens"),
    ("az_no_rows.csv", AZ, 2, "no data rows"),
    ("vi_nan.csv", VI + "nan,3,4\n", 4, "arrived_at"),
    ("vi_text.csv", VI + "soon,3,4\n", 4, "not a number"),
    ("vi_back.csv", VI + "0.2,3,4\n", 4, "backwards"),
    ("vi_extra.csv", VI + "1.0,3,4,9\n", 4, "4 fields"),
    ("mc_json.jsonl", MC_OK * 2 + '{"timestamp": 5, "input_length": 3\n', 3, "bad JSON"),
    ("mc_key.jsonl", MC_OK + '{"timestamp": 5, "input_length": 3, "output_length": 1}\n',
     2, "hash_ids"),
    ("mc_len.jsonl", MC_OK + MC_OK.replace("600", '"600"'), 2, "input_length"),
    ("mc_neg.jsonl", MC_OK + "\n" + MC_OK.replace("5,", "-5,"), 3, "output_length"),
    ("mc_ids.jsonl", MC_OK + MC_OK.replace("[0, 1]", "[0, 1.5]"), 2, "hash_ids"),
    ("mc_back.jsonl", MC_OK.replace(": 0,", ": 9000,") + MC_OK, 2, "backwards"),
]


@pytest.mark.parametrize(("name", "content", "line", "word"), MALFORMED,
                         ids=[case[0] for case in MALFORMED])
def test_malformed_file_error_names_file_and_line(
    tmp_path: Path, name: str, content: str, line: int, word: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    fmt = {"az": "azure2023", "vi": "vidur", "mc": "mooncake"}[name[:2]]
    with pytest.raises(TraceError) as info:
        read_trace(path, fmt)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert name in message and word in message and " — " in message


def test_clock_jitter_within_tolerance_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "jitter.csv"
    path.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n"
                    "0.0,1,1\n1.0,1,1\n0.9999,1,1\n2.0,1,1\n")
    trace = read_trace(path)
    assert trace.arrival_s is not None and np.all(np.diff(trace.arrival_s) >= 0)


def test_empty_and_unknown_files_list_the_formats(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(TraceError, match=r"empty\.csv:1: .*azure2023.*burstgpt.*vllm_bench"):
        detect_format(empty)
    with pytest.raises(TraceError, match=r"empty\.csv:1: empty file .*TIMESTAMP,ContextTokens"):
        read_trace(empty, "azure2023")
    odd = tmp_path / "odd.csv"
    odd.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(TraceError, match=r"odd\.csv:1: unknown header `a,b,c` .*mooncake"):
        read_trace(odd)
    with pytest.raises(ValueError, match="unknown trace format"):
        read_trace(AZURE_CODE, "splitwise")  # type: ignore[arg-type]


def test_mooncake_drops_zero_token_rows(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    zero = MC_OK.replace(": 0,", ": 1000,").replace('"output_length": 5', '"output_length": 0')
    path.write_text(MC_OK + zero + MC_OK.replace(": 0,", ": 2500,"))
    trace = read_trace(path)
    assert len(trace) == 2 and trace.metadata["dropped_rows"] == 1
    assert trace.arrival_s is not None and trace.arrival_s.tolist() == [0.0, 2.5]
    assert trace.hash_ids is not None and len(trace.hash_ids) == 2


# --------------------------------------------------------------------------- fixtures
# No real Azure 2024, BurstGPT or vllm-bench file can be shipped: Azure 2024 is served
# only from blob storage, BurstGPT's CSVs are Git-LFS objects, and a vllm-bench result is
# produced locally (see data/traces/README.md). These small files copy the real formats.

# Azure 2024 (AzurePublicDataset, AzureLLMInferenceDataset2024.md): the 2023 columns,
# UTC timestamps as pandas writes tz-aware times ("+00:00"), fraction digits may vary.
AZURE_2024 = (
    "TIMESTAMP,ContextTokens,GeneratedTokens\n"
    "2024-05-10 00:00:00.004000+00:00,2048,12\n"
    "2024-05-10 00:00:00.5+00:00,1024,0\n"
    "2024-05-10T00:00:01+00:00,300,40\n"
    "2024-05-10 01:00:01.25+01:00,77,8\n"
    "2024-05-10 00:00:03.123456789Z,50,5"
)


def test_azure_2024_fixture(tmp_path: Path) -> None:
    path = tmp_path / "AzureLLMInferenceTrace_code_1week.csv"
    path.write_text(AZURE_2024)
    assert detect_format(path) == "azure2024"
    trace = read_trace(path)
    assert trace.format == "azure2024"
    assert trace.metadata["dropped_rows"] == 1  # GeneratedTokens = 0
    assert trace.prompt_tokens.tolist() == [2048, 300, 77, 50]
    assert trace.arrival_s is not None
    np.testing.assert_allclose(trace.arrival_s, [0.0, 0.996, 1.246, 3.119456789], atol=1e-9)
    assert trace.metadata["start_time"] == "2024-05-10T00:00:00.004000000"


# BurstGPT (HPMLL/BurstGPT, README "Data Schema"; BurstGPT_1.csv): columns below,
# Timestamp in integer seconds from the start, Response tokens = 0 for a failed request.
BURSTGPT = (
    "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
    "5,ChatGPT,472,18,490,Conversation log\n"
    "45,ChatGPT,1087,0,1087,Conversation log\n"
    "118,GPT-4,417,276,693,Conversation log\n"
    "130,ChatGPT,1360,129,1489,API log\n"
    "151,GPT-4,800,0,800,API log\n"
    "160,GPT-4,31,2,33,API log\n"
)


def _burstgpt(tmp_path: Path) -> Path:
    path = tmp_path / "BurstGPT_1.csv"
    path.write_text(BURSTGPT)
    return path


def test_burstgpt_drops_failed_rows(tmp_path: Path) -> None:
    path = _burstgpt(tmp_path)
    assert detect_format(path) == "burstgpt"
    trace = read_trace(path)
    assert len(trace) == 4
    assert trace.metadata["failed_rows"] == 2 and trace.metadata["dropped_rows"] == 2
    assert trace.metadata["models"] == ("ChatGPT", "GPT-4")
    assert trace.arrival_s is not None and trace.arrival_s.tolist() == [0, 113, 125, 155]
    assert trace.output_tokens.tolist() == [18, 276, 129, 2]


def test_burstgpt_filters(tmp_path: Path) -> None:
    path = _burstgpt(tmp_path)
    gpt4 = read_trace(path, burstgpt_model="GPT-4")
    assert gpt4.prompt_tokens.tolist() == [417, 31]
    assert gpt4.metadata["failed_rows"] == 1 and gpt4.metadata["filtered_rows"] == 3
    assert gpt4.arrival_s is not None and gpt4.arrival_s.tolist() == [0, 42]
    api = read_trace(path, burstgpt_model="chatgpt", burstgpt_log_type="API log")
    assert api.prompt_tokens.tolist() == [1360] and api.metadata["log_types"] == ("API log",)
    conv = read_trace(path, burstgpt_log_type="Conversation log")
    assert conv.prompt_tokens.tolist() == [472, 417] and conv.metadata["failed_rows"] == 1
    with pytest.raises(TraceError, match=r"BurstGPT_1\.csv:1: no row has Model = 'Llama'"):
        read_trace(path, burstgpt_model="Llama")
    with pytest.raises(ValueError, match="BurstGPT"):
        read_trace(AZURE_CODE, burstgpt_model="GPT-4")


def test_burstgpt_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text(BURSTGPT + "170,GPT-4,many,2,33,API log\n")
    with pytest.raises(TraceError, match=r"b\.csv:8: Request tokens 'many' is not an integer"):
        read_trace(path)


def _vllm_result(errors: list[str]) -> dict[str, object]:
    """A result shaped like vllm/benchmarks/serve.py's --save-result --save-detailed JSON."""
    n = len(errors)
    return {
        "date": "20250301-101500", "backend": "vllm", "model_id": "Qwen/Qwen2.5-0.5B",
        "tokenizer_id": "Qwen/Qwen2.5-0.5B", "num_prompts": n, "request_rate": "inf",
        "burstiness": 1.0, "max_concurrency": 8, "duration": 12.5, "completed": n - 1,
        "total_input_tokens": 1000, "total_output_tokens": 300, "request_throughput": 0.3,
        "output_throughput": 24.0, "mean_ttft_ms": 40.0, "median_ttft_ms": 38.0,
        "input_lens": [100, 200, 300, 400][:n], "output_lens": [50, 0, 70, 80][:n],
        "ttfts": [0.04, 0.0, 0.05, 0.05][:n], "itls": [[0.01], [], [0.01], [0.02]][:n],
        "generated_texts": ["a", "", "b", "c"][:n], "errors": errors,
    }


@pytest.mark.parametrize("indent", [None, 4])
def test_vllm_bench_fixture(tmp_path: Path, indent: int | None) -> None:
    path = tmp_path / "vllm-infqps-concurrency8.json"
    # row 1: no output tokens; row 3: an error (vllm sets its output_len to 0 too, but an
    # error alone must be enough)
    path.write_text(json.dumps(_vllm_result(["", "", "", "Timeout"]), indent=indent))
    assert detect_format(path) == "vllm_bench"
    trace = read_trace(path)
    assert trace.arrival_s is None
    assert trace.prompt_tokens.tolist() == [100, 300]
    assert trace.output_tokens.tolist() == [50, 70]
    assert trace.metadata["failed_rows"] == 2 and trace.metadata["dropped_rows"] == 2
    assert trace.metadata["request_rate"] == math.inf
    assert trace.metadata["max_concurrency"] == 8 and trace.metadata["duration"] == 12.5
    with pytest.raises(ValueError, match="no arrival times"):
        _ = trace.duration_s
    with pytest.raises(ValueError, match="no arrival times"):
        trace.transform(speedup=2.0)
    assert len(trace.transform(limit=2)) == 2


def test_vllm_bench_errors(tmp_path: Path) -> None:
    path = tmp_path / "res.json"
    result = _vllm_result(["", "", "", ""])
    result["output_lens"] = [50, 60, -1, 80]
    path.write_text(json.dumps(result, indent=2))
    with pytest.raises(TraceError, match=r"res\.json:\d+: output_lens\[2\] is -1"):
        read_trace(path)
    line = path.read_text().split("\n").index('  "output_lens": [') + 1
    with pytest.raises(TraceError, match=rf"res\.json:{line}: "):
        read_trace(path)
    for key in ("input_lens", "output_lens", "ttfts", "itls", "generated_texts", "errors"):
        del result[key]
    path.write_text(json.dumps(result))
    with pytest.raises(TraceError, match="--save-detailed"):
        read_trace(path, "vllm_bench")
    path.write_text('{"date": "x", "num_prompts": 3,\n "input_lens": [1, 2\n')
    with pytest.raises(TraceError, match=r"res\.json:\d+: bad JSON"):
        read_trace(path, "vllm_bench")


# --------------------------------------------------------------------------- transform


def _small_trace() -> Trace:
    """Five requests with 512-token hash blocks."""
    prompt = np.array([1000, 600, 100, 2000, 513], dtype=np.int64)
    ids = tuple(np.arange(-(-p // 512), dtype=np.int64) + 10 * i for i, p in enumerate(prompt))
    return Trace("mem", "mooncake", np.array([0.0, 1.0, 2.0, 4.0, 8.0]), prompt,
                 np.array([10, 200, 30, 40, 5], dtype=np.int64), ids, 512, {"dropped_rows": 0})


def test_transform_speedup_halves_span() -> None:
    trace = read_trace(AZURE_CODE)
    fast = trace.transform(speedup=2.0)
    assert fast.duration_s == pytest.approx(trace.duration_s / 2)
    assert fast.mean_rate_per_s == pytest.approx(2 * trace.mean_rate_per_s)
    np.testing.assert_array_equal(fast.prompt_tokens, trace.prompt_tokens)
    assert fast.metadata["transforms"][-1]["speedup"] == 2.0


def test_transform_window_rebases() -> None:
    trace = read_trace(VIDUR_CONV)
    assert trace.arrival_s is not None
    part = trace.transform(window_s=(600.0, 1200.0))
    inside = (trace.arrival_s >= 600.0) & (trace.arrival_s < 1200.0)
    assert len(part) == int(inside.sum()) > 0
    assert part.arrival_s is not None and part.arrival_s[0] == 0.0
    first = trace.arrival_s[inside][0]
    np.testing.assert_allclose(part.arrival_s, trace.arrival_s[inside] - first)
    np.testing.assert_array_equal(part.output_tokens, trace.output_tokens[inside])
    both = trace.transform(window_s=(600.0, 1200.0), speedup=4.0)
    assert both.duration_s == pytest.approx(part.duration_s / 4)
    with pytest.raises(ValueError, match="no request arrives"):
        trace.transform(window_s=(1e6, 2e6))


def test_transform_window_keeps_hash_ids_with_rows() -> None:
    part = _small_trace().transform(window_s=(1.0, 5.0))
    assert part.arrival_s is not None and part.arrival_s.tolist() == [0.0, 1.0, 3.0]
    assert part.prompt_tokens.tolist() == [600, 100, 2000]
    assert part.hash_ids is not None
    assert [h.tolist() for h in part.hash_ids] == [[10, 11], [20], [30, 31, 32, 33]]


def test_transform_clip_respects_max_context() -> None:
    clipped = _small_trace().transform(max_context_tokens=520)
    total = clipped.prompt_tokens + clipped.output_tokens
    assert total.max() <= 520
    assert clipped.prompt_tokens.tolist() == [510, 320, 100, 480, 513]
    assert clipped.output_tokens.tolist() == [10, 200, 30, 40, 5]
    assert clipped.hash_ids is not None
    assert [len(h) for h in clipped.hash_ids] == [1, 1, 1, 1, 2]
    tiny = _small_trace().transform(max_context_tokens=100)
    assert tiny.prompt_tokens.tolist() == [90, 1, 70, 60, 95]
    assert tiny.output_tokens.tolist() == [10, 99, 30, 40, 5]
    assert (tiny.prompt_tokens >= 1).all() and (tiny.output_tokens >= 1).all()
    real = read_trace(MOONCAKE_CONV).transform(max_context_tokens=32_768)
    assert (real.prompt_tokens + real.output_tokens).max() <= 32_768
    assert real.hash_ids is not None
    assert [len(h) for h in real.hash_ids] == (-(-real.prompt_tokens // 512)).tolist()


def test_transform_length_scale_and_limit() -> None:
    scaled = _small_trace().transform(length_scale=0.01)
    assert scaled.prompt_tokens.tolist() == [10, 6, 1, 20, 5]
    assert scaled.output_tokens.tolist() == [1, 2, 1, 1, 1]
    assert scaled.hash_ids is not None and all(len(h) == 1 for h in scaled.hash_ids)
    first = read_trace(AZURE_CONV).transform(limit=100)
    assert len(first) == 100
    assert first.arrival_s is not None and first.arrival_s[0] == 0.0
    assert len(_small_trace().transform(limit=1000)) == 5
    for bad in ({"speedup": 0.0}, {"limit": 0}, {"max_context_tokens": 1},
                {"length_scale": -1.0}, {"window_s": (5.0, 5.0)}):
        with pytest.raises(ValueError):
            _small_trace().transform(**bad)
