"""Readers of measured data: every calibration file parses, numbers follow from the raw files."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from pathlib import Path

import pytest
import yaml

from calibration.measurements import (
    DATA_DIR,
    MeasurementError,
)
from calibration.readers import (
    PUBLISHED_SKIPPED,
    load_manifest,
    load_measurements,
    read_batched_bench,
    read_llama_bench,
    read_published_latency,
    read_published_steps,
    read_server_summary,
    read_step_csv,
    read_vidur_attention,
    read_vidur_mlp,
    read_vllm_bench_latency,
    read_vllm_step_bench,
)
from sim.shapes import BatchShape

REPO = DATA_DIR.parent.parent
THIS = DATA_DIR / "this_machine"
MANIFEST = THIS / "manifest.yaml"
VIDUR = DATA_DIR / "vidur" / "data" / "profiling"
LLAMA = {"model": "smollm2-135m", "hardware": "epyc-zen5-2c-vm"}
SOFTWARE = "llama.cpp 0c1e570 (llama-cpp-python 0.3.36)"


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- every calibration file parses


BATCHED = sorted((THIS / "llama_cpp").glob("batched_bench_*.jsonl"))
BENCH = sorted((THIS / "llama_cpp").glob("llama_bench_*.csv"))


@pytest.mark.parametrize("path", BATCHED, ids=lambda p: p.name)
def test_batched_bench_row_count_follows_from_passes(path: Path) -> None:
    rows = read_batched_bench(path, weight_format="f16", software=SOFTWARE, **LLAMA)
    raw = jsonl(path)
    # per object: ceil(pl*pp / n_ubatch) prompt passes + one averaged decode row
    expected = sum(math.ceil(r["pl"] * r["pp"] / r["n_ubatch"]) + 1 for r in raw)
    assert len(rows) == expected
    # the prompt passes of each object add up to t_pp, the decode row times tg to t_tg
    assert sum(m.step_s * m.num_steps for m in rows) == pytest.approx(
        sum(r["t_pp"] + r["t_tg"] for r in raw)
    )


def test_batched_bench_t1_has_15_objects_and_60_rows() -> None:
    path = THIS / "llama_cpp" / "batched_bench_t1.jsonl"
    assert len(jsonl(path)) == 15  # 16 lines: the file ends with a blank line
    assert len(read_batched_bench(path, weight_format="f16", software=SOFTWARE, **LLAMA)) == 60


@pytest.mark.parametrize("path", BENCH, ids=lambda p: p.name)
def test_llama_bench_parses(path: Path) -> None:
    rows = read_llama_bench(path, software=SOFTWARE, **LLAMA)
    with path.open() as f:
        raw = list(csv.DictReader(f))
    assert len(rows) == len(raw) == 4  # pp32, pp128, pp512 (one pass each at ubatch 512), tg64
    assert {m.weight_format for m in rows} == {"f16"}
    assert {m.threads for m in rows} == {int(raw[0]["n_threads"])}
    assert {m.provenance.date for m in rows} == {raw[0]["test_time"][:10]}


def test_vllm_step_bench_parses_every_run() -> None:
    path = THIS / "vllm_cpu" / "step_bench.jsonl"
    rows = read_vllm_step_bench(path, model="smollm2-135m", hardware="epyc-zen5-2c-vm")
    raw = jsonl(path)
    assert len(raw) == 48
    # the rows of one run cover the run exactly: sum of their times = t_total_s
    for lineno, run in enumerate(raw, start=1):
        mine = [m for m in rows if m.provenance.notes.startswith(f"line {lineno} ")]
        assert sum(m.step_s * m.num_steps for m in mine) == pytest.approx(run["t_total_s"])
        # every prompt token is computed once and every output token is generated once
        shapes = [(m.shape, m.num_steps) for m in mine]
        assert sum(s.num_prefill_tokens * n for s, n in shapes) == run["B"] * run["PP"]
        assert sum(s.num_decode_seqs * n for s, n in shapes) == run["B"] * (run["TG"] - 1)
    assert {m.weight_format for m in rows} == {"bf16"}
    assert {m.provenance.software for m in rows} == {"vllm-cpu 0.32.0"}


def test_server_summaries_parse_with_roles() -> None:
    calib = read_server_summary(THIS / "llama_cpp" / "server_single_stream.csv")
    vllm = read_server_summary(THIS / "vllm_cpu" / "single_stream.csv")
    valid = read_server_summary(THIS / "llama_cpp_python_server" / "summary.csv")
    assert (len(calib), len(vllm), len(valid)) == (6, 2, 5)
    assert {r.role for r in calib + vllm} == {"calibration"}
    assert {r.role for r in valid} == {"validation"}
    assert [r.concurrency for r in valid] == [1, 2, 4, 8, 16]
    assert valid[0].ttft_p50_s == 0.275


def test_vidur_profiles_parse() -> None:
    mlp = VIDUR / "compute" / "a100" / "meta-llama" / "Meta-Llama-3-8B" / "mlp.csv"
    rows = read_vidur_mlp(mlp, model="llama-3.1-8b", hardware="a100-80gb-pcie", num_layers=32)
    one = [m for m in rows if m.shape.num_prefill_tokens == 1]
    # Vidur README: 0.303 ms/layer at 1 token for Llama-3-8B on A100 (9 per-layer op medians)
    assert one[0].step_s == pytest.approx(32 * 0.303e-3, rel=1e-3)
    assert all("linear-only" in m.provenance.notes for m in rows)
    attn = read_vidur_attention(
        VIDUR / "a100" / "attention.csv",
        model="llama-3.1-70b",
        hardware="a100-80gb-pcie",
        num_layers=80,
        tp=2,
    )
    assert len(attn) == 14658
    assert all("attention-only" in m.provenance.notes for m in attn)


def test_published_steps_and_latency() -> None:
    rows = read_published_steps()
    assert rows
    assert all(
        m.provenance.sha256 == "" and m.provenance.source.startswith("https://") for m in rows
    )
    with pytest.raises(MeasurementError, match="read_published_latency"):
        read_published_steps("vllm_ci_h200_latency")
    (lat,) = read_published_latency("vllm_ci_h200_latency")
    assert lat.total_s == pytest.approx(0.833421)
    assert lat.prefill_shape.num_prefill_tokens == 8 * 32
    assert len(lat.decode_shapes) == 127
    assert lat.decode_shapes[0].num_context_tokens == 8 * 32


def test_every_published_case_is_read_or_skipped_with_a_reason() -> None:
    cases = json.loads((DATA_DIR / "published" / "microbenchmarks.json").read_text())["cases"]
    read = {m.provenance.notes.split()[1] for m in read_published_steps()}
    assert read | set(PUBLISHED_SKIPPED) == {c["id"] for c in cases}
    assert not read & set(PUBLISHED_SKIPPED)


# ---------------------------------------------------------------- arithmetic from raw numbers


def test_batched_bench_decode_row_is_t_tg_over_tg() -> None:
    path = THIS / "llama_cpp" / "batched_bench_t1.jsonl"
    raw = jsonl(path)[8]  # pp=128, tg=64, pl=8
    rows = read_batched_bench(path, weight_format="f16", software=SOFTWARE, **LLAMA)
    (decode,) = [m for m in rows if m.provenance.notes.startswith("line 9 ") and m.num_steps > 1]
    assert decode.step_s == raw["t_tg"] / raw["tg"]
    assert decode.num_steps == raw["tg"]
    assert decode.shape == BatchShape(
        num_decode_seqs=raw["pl"],
        num_context_tokens=math.floor(raw["pl"] * (raw["pp"] + (raw["tg"] - 1) / 2) + 0.5),
    )
    # 8 x 128 = 1024 prompt tokens -> two passes of 512, each 4 chunks of 64 per sequence
    prompt = [m for m in rows if m.provenance.notes.startswith("line 9 ") and m.num_steps == 1]
    assert [m.step_s for m in prompt] == pytest.approx([raw["t_pp"] / 2] * 2)
    assert [m.shape.prefill_context_tokens for m in prompt] == [0, raw["pl"] * 64]
    assert sum(m.shape.prefill_attention_pairs for m in prompt) == raw["pl"] * 128 * 129 / 2


def test_llama_bench_pp_and_tg_rows_from_avg_ns() -> None:
    path = THIS / "llama_cpp" / "llama_bench_t1.csv"
    with path.open() as f:
        raw = list(csv.DictReader(f))
    rows = read_llama_bench(path, software=SOFTWARE, **LLAMA)
    pp512, tg64 = rows[2], rows[3]
    assert pp512.step_s == int(raw[2]["avg_ns"]) * 1e-9
    assert pp512.shape == BatchShape(512, 1, 0, 512 * 513 / 2)
    assert tg64.step_s == int(raw[3]["avg_ns"]) * 1e-9 / int(raw[3]["n_gen"])
    assert tg64.num_steps == 64
    assert tg64.shape == BatchShape(num_decode_seqs=1, num_context_tokens=32)  # 0..63 -> 31.5


def test_llama_bench_json_splits_long_prompts_by_token_share(tmp_path: Path) -> None:
    src = THIS / "llama_cpp" / "llama_bench_t1.csv"
    with src.open() as f:
        row = next(csv.DictReader(f))
    row.update(n_prompt=1000, n_ubatch=512, model_type="llama 8B Q4_K - Medium", avg_ns=2e9)
    path = tmp_path / "bench.json"
    path.write_text(json.dumps([row]))
    rows = read_llama_bench(path, model="llama-3.1-8b", hardware="rtx-4090")
    assert [m.shape.num_prefill_tokens for m in rows] == [512, 488]
    assert [m.shape.prefill_context_tokens for m in rows] == [0, 512]
    assert [m.step_s for m in rows] == pytest.approx([2.0 * 512 / 1000, 2.0 * 488 / 1000])
    assert {m.weight_format for m in rows} == {"q4_k_m"}


def test_vllm_full_batch_decode_row_matches_decode_step_ms() -> None:
    path = THIS / "vllm_cpu" / "step_bench.jsonl"
    raw = jsonl(path)
    rows = read_vllm_step_bench(path, model="smollm2-135m", hardware="epyc-zen5-2c-vm")
    for lineno in (1, 15, 46):  # B=1 PP=128; B=8 PP=768 (chunked prefill); B=32 PP=128
        run = raw[lineno - 1]
        mine = [m for m in rows if m.provenance.notes.startswith(f"line {lineno} ")]
        full = [m for m in mine if m.shape.num_decode_seqs == run["B"] and m.num_steps > 1]
        assert len(full) == 1
        assert full[0].num_steps == run["n_decode_steps_full_batch"]
        assert full[0].step_s * 1e3 == pytest.approx(run["step_ms_mean"], abs=5e-4)
        first = mine[0]
        assert first.step_s == pytest.approx(run["steps"][0][0] * 1e-3)


def test_vllm_chunked_prefill_follows_v1_budget() -> None:
    # B=8 x PP=768 under a 2048-token budget: 768+768+512 | 2 decodes + 256 + 768 + 768 + 254 |
    # 5 decodes + 514 + 768 + 761 | 7 decodes + 7
    path = THIS / "vllm_cpu" / "step_bench.jsonl"
    rows = read_vllm_step_bench(path, model="smollm2-135m", hardware="epyc-zen5-2c-vm")
    prompt = [m.shape for m in rows if m.provenance.notes.startswith("line 15 ")][:4]
    assert [(s.num_prefill_tokens, s.num_prefill_seqs, s.num_decode_seqs) for s in prompt] == [
        (2048, 3, 0),
        (2046, 4, 2),
        (2043, 3, 5),
        (7, 1, 7),
    ]
    assert all(s.num_tokens <= 2048 for s in prompt)


def test_vidur_mlp_row_is_layers_times_op_medians() -> None:
    path = VIDUR / "compute" / "h100" / "meta-llama" / "Llama-2-7b-hf" / "mlp.csv"
    with path.open() as f:
        raw = next(r for r in csv.DictReader(f) if r["num_tensor_parallel_workers"] == "1")
    ops = [k for k in raw if k.endswith(".median") and ".emb." not in k]
    assert len(ops) == 9
    rows = read_vidur_mlp(path, model="llama-2-7b", hardware="h100-sxm", num_layers=32)
    assert rows[0].step_s == pytest.approx(32 * sum(float(raw[k]) for k in ops) * 1e-3)
    assert rows[0].shape.num_prefill_tokens == int(raw["num_tokens"])
    assert rows[0].engine == "vidur-sarathi"


def test_vllm_bench_latency_from_dict() -> None:
    (lat,) = read_vllm_bench_latency(
        {"avg_latency": 1.5, "latencies": [1.4, 1.6], "percentiles": {}},
        model="llama-3.1-8b",
        hardware="h100-sxm",
        software="vllm 0.10",
        input_len=100,
        output_len=10,
        batch_size=4,
    )
    assert lat.total_s == 1.5
    assert lat.num_samples == 2
    assert len(lat.shapes) == 10
    assert lat.decode_shapes[-1] == BatchShape(num_decode_seqs=4, num_context_tokens=4 * 108)


# ---------------------------------------------------------------- provenance


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param(lambda: load_manifest(MANIFEST), id="this_machine"),
        pytest.param(lambda: load_manifest(DATA_DIR / "vidur" / "manifest.yaml"), id="vidur"),
    ],
)
def test_provenance_sha256_is_the_file_hash(rows) -> None:
    measurements = rows()
    for source in {m.provenance.source for m in measurements}:
        prov = next(m.provenance for m in measurements if m.provenance.source == source)
        assert not Path(source).is_absolute()
        assert prov.sha256 == sha(REPO / source)
        assert prov.hardware
        assert prov.software
        assert prov.date


# ---------------------------------------------------------------- errors name file, line, fix


def test_bad_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    lines = (THIS / "llama_cpp" / "batched_bench_t1.jsonl").read_text().splitlines()
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([lines[0], lines[1][:40], lines[2]]) + "\n")
    with pytest.raises(MeasurementError, match=r"bad\.jsonl:2: not valid JSON"):
        read_batched_bench(path, weight_format="f16", software=SOFTWARE, **LLAMA)


def test_missing_key_in_jsonl_names_file_line_and_key(tmp_path: Path) -> None:
    raw = jsonl(THIS / "llama_cpp" / "batched_bench_t1.jsonl")
    del raw[1]["t_tg"]
    path = tmp_path / "bb.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in raw))
    with pytest.raises(MeasurementError, match=r"bb\.jsonl:2: missing value for 't_tg'"):
        read_batched_bench(path, weight_format="f16", software=SOFTWARE, **LLAMA)


def test_missing_csv_column_names_file_and_column(tmp_path: Path) -> None:
    text = (THIS / "llama_cpp" / "llama_bench_t1.csv").read_text().replace("avg_ns", "avg_xx", 1)
    path = tmp_path / "bench.csv"
    path.write_text(text)
    with pytest.raises(MeasurementError, match=r"bench\.csv:1: missing column\(s\) avg_ns"):
        read_llama_bench(path, software=SOFTWARE, **LLAMA)


def test_bad_csv_value_names_the_line(tmp_path: Path) -> None:
    lines = (THIS / "llama_cpp" / "llama_bench_t1.csv").read_text().splitlines()
    lines[3] = lines[3].replace('"752719532"', '"oops"')
    path = tmp_path / "bench.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MeasurementError, match=r"bench\.csv:4: bad value 'oops' for 'avg_ns'"):
        read_llama_bench(path, software=SOFTWARE, **LLAMA)


def _step_csv(tmp_path: Path, meta: dict) -> Path:
    path = tmp_path / "steps.csv"
    path.write_text(
        "prefill_tokens,decode_seqs,context_tokens,step_s,num_steps\n"
        "512,0,0,0.05,1\n"
        "0,8,1000,0.012,63\n"
    )
    (tmp_path / "steps.meta.yaml").write_text("".join(f"{k}: {v}\n" for k, v in meta.items()))
    return path


STEP_META = {
    "model": "llama-3.1-8b",
    "hardware": "h100-sxm",
    "engine": "vllm",
    "weight_format": "bf16",
    "threads": "null",
    "source": "https://example.org/run",
    "software": "vllm 0.11",
    "date": "2026-01-02",
}


def test_read_step_csv_with_sidecar(tmp_path: Path) -> None:
    path = _step_csv(tmp_path, STEP_META)
    rows = read_step_csv(path)
    assert [m.shape for m in rows] == [
        BatchShape(512, 1, 0, 512 * 513 / 2),
        BatchShape(num_decode_seqs=8, num_context_tokens=1000),
    ]
    assert [m.num_steps for m in rows] == [1, 63]
    assert rows[0].provenance.sha256 == sha(path)
    assert rows[0].threads is None
    assert rows[0].engine == "vllm"
    assert load_measurements(path) == rows


def test_read_step_csv_missing_meta_key_names_it(tmp_path: Path) -> None:
    meta = {k: v for k, v in STEP_META.items() if k != "weight_format"}
    path = _step_csv(tmp_path, meta)
    with pytest.raises(MeasurementError, match=r"steps\.meta\.yaml: missing key 'weight_format'"):
        read_step_csv(path)


def test_unknown_format_lists_supported_ones(tmp_path: Path) -> None:
    path = tmp_path / "mystery.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(
        MeasurementError, match=r"mystery\.csv: unknown measurement format; supported"
    ):
        load_measurements(path)


def test_file_needing_arguments_outside_a_manifest_says_how(tmp_path: Path) -> None:
    path = tmp_path / "bb.jsonl"
    path.write_text((THIS / "llama_cpp" / "batched_bench_t1.jsonl").read_text())
    with pytest.raises(MeasurementError, match=r"'kind': 'batched_bench'.*'model'"):
        load_measurements(path)
    rows = load_measurements(
        {"kind": "batched_bench", "path": path, "weight_format": "f16", "software": "x", **LLAMA}
    )
    assert len(rows) == 60


# ---------------------------------------------------------------- manifest and validation data


def test_manifest_loads_the_calibration_set_without_validation_files() -> None:
    rows = load_manifest(MANIFEST)
    assert len(rows) > 0
    sources = {m.provenance.source for m in rows}
    assert not any("llama_cpp_python_server" in s or "validation" in s for s in sources)
    assert not any(s.endswith("single_stream.csv") for s in sources)
    listed = [e["path"] for e in yaml.safe_load(MANIFEST.read_text())["entries"]]
    assert not any(p.startswith("llama_cpp_python_server") or "single_stream" in p for p in listed)
    assert {m.model for m in rows} == {"smollm2-135m"}
    assert {m.hardware for m in rows} == {"epyc-zen5-2c-vm"}
    assert load_measurements(MANIFEST) == rows


def test_files_listed_in_a_manifest_load_by_path() -> None:
    path = THIS / "llama_cpp" / "batched_bench_t1_q8_0.jsonl"
    rows = load_measurements(str(path))
    assert {m.weight_format for m in rows} == {"q8_0"}
    assert {m.threads for m in rows} == {1}


@pytest.mark.parametrize(
    "path",
    [
        DATA_DIR / "published" / "validation_visible.json",
        THIS / "llama_cpp_python_server" / "summary.csv",
        THIS / "llama_cpp_python_server" / "pyserver_t1_c4_requests.csv",
    ],
    ids=lambda p: p.name,
)
def test_validation_data_is_refused(path: Path) -> None:
    with pytest.raises(MeasurementError, match="validation data"):
        load_measurements(path)


def test_request_level_files_point_to_their_reader() -> None:
    with pytest.raises(MeasurementError, match="read_server_summary"):
        load_measurements(THIS / "vllm_cpu" / "single_stream.csv")


# ---------------------------------------------------------------- data README


def _readme_hashes() -> dict[str, str]:
    text = (DATA_DIR / "README.md").read_text()
    rows = re.findall(r"^\|\s*`([^`]+)`\s*\|.*?\b([0-9a-f]{64})\b", text, flags=re.M)
    return dict(rows)


def test_every_copied_file_is_in_the_readme_with_its_sha256() -> None:
    listed = _readme_hashes()
    authored = {"README.md", "this_machine/manifest.yaml", "vidur/manifest.yaml", "gpu/manifest.yaml",
                "sandbox_zen4/manifest.yaml"}
    copied = {
        p.relative_to(DATA_DIR).as_posix()
        for p in DATA_DIR.rglob("*")
        if p.is_file() and p.relative_to(DATA_DIR).as_posix() not in authored
    }
    assert copied, "no data files found"
    assert copied - listed.keys() == set(), "copied files missing from calibration/data/README.md"
    for rel in copied:
        assert listed[rel] == sha(DATA_DIR / rel), f"README sha256 of {rel} is stale"


def test_data_stays_small() -> None:
    size = sum(p.stat().st_size for p in DATA_DIR.rglob("*") if p.is_file())
    assert size < 9 * 2**20  # 8.0 MiB before the sandbox_zen4 runs (2026-12-06), 7.1 MiB of it Vidur


def test_the_data_readme_names_every_validation_path() -> None:
    """The data README's sentence on what the readers refuse lists exactly VALIDATION_PATHS."""
    from calibration.measurements import VALIDATION_PATHS

    text = (DATA_DIR / "README.md").read_text()
    start = text.index("validation files (")
    listed = set(re.findall(r"`([^`]+)`", text[start:text.index("no manifest lists them", start)]))
    assert set(VALIDATION_PATHS) <= listed
