"""Bad input gets a clean error (exit 2, the file, the field, the bad value, a fix that is itself
valid), never a traceback; runs too big for memory are refused before anything is allocated;
``servesim check`` refuses what ``run`` would refuse."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sim.cli import app
from sim.cli.check import check_scenario
from sim.limits import BYTES_PER_REQUEST, memory_limit_bytes
from sim.scenario import ScenarioError, parse_scenario
from sim.simulation import resolve_servers

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "scenarios" / "seed_benchmark.yaml"
VIDUR_HEADER = b"arrived_at,num_prefill_tokens,num_decode_tokens\n"


def cli(*args: str) -> tuple[int, str]:
    """Exit code and the output as one line; a traceback (any other exception) fails the test."""
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, " ".join(result.output.split())


def seed_data(**changes: Any) -> dict[str, Any]:
    data = yaml.safe_load(SEED.read_text())
    data["sweep"] = {"path": "workload.arrival.users", "values": [2]}
    data["workload"]["num_requests"] = 30
    data.update(changes)
    return data


def write(tmp_path: Path, data: Any, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str | bytes) else "", encoding="utf-8")
    if isinstance(data, bytes):
        path.write_bytes(data)
    elif isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    return path


def trace_scenario(tmp_path: Path, content: bytes, name: str = "trace.csv") -> Path:
    (tmp_path / name).write_bytes(content)
    data = {"name": "t", "model": "llama-3.1-8b", "hardware": "h100-sxm",
            "workload": {"arrival": {"kind": "trace", "path": name}},
            "servers": [{"engine": "vllm"}]}
    return write(tmp_path, data)


def refused(tmp_path: Path, path: Path, *, command: str = "run", expect: str = "") -> str:
    """Both check and run exit 2 with one error line naming the file (and ``expect``)."""
    for cmd in (("check",), ("run",)) if command == "both" else ((command,),):
        code, out = cli(*cmd, str(path))
        assert code == 2, out
        assert out.startswith("error:") and str(path) in out, out
        assert re.search(expect, out), out
    return out


# --------------------------------------------------------------------- scenario files


@pytest.mark.parametrize(("content", "expect"), [
    (bytes(range(256)) * 4, "binary file"),
    (b"", "is empty"),
    (b"   \n\n", "is empty"),
    (b"name: caf\xe9\n", r"s.yaml:1: byte 0xe9 is not UTF-8"),
    (b"name: x\nseed: 2023-13-45\n", "cannot be read.*quote it"),
    (b"[1, 2", "not valid YAML"),
])
def test_unreadable_scenarios_get_one_clean_error(tmp_path: Path, content: bytes, expect: str) -> None:
    refused(tmp_path, write(tmp_path, content), command="both", expect=expect)


def test_a_folder_given_to_run_and_an_empty_folder_given_to_check(tmp_path: Path) -> None:
    folder = tmp_path / "scen.yaml"
    folder.mkdir()
    code, out = cli("run", str(folder))
    assert code == 2 and "is a folder" in out and "check" in out
    code, out = cli("check", str(folder))
    assert code == 2 and "no scenario files" in out
    code, out = cli("check", str(tmp_path / "missing"))
    assert code == 2 and "no such file or folder" in out


def test_check_reads_toml_in_folders(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('name = "x"\n')
    write(tmp_path, seed_data(), "good.yaml")
    code, out = cli("check", str(tmp_path))
    assert code == 2
    assert "ok " in out and "good.yaml" in out and "bad.toml" in out and "model: required field" in out


@pytest.mark.parametrize(("change", "expect"), [
    ({"seed": -1}, r"seed: Input should be greater than or equal to 0 \(got -1\)"),
    ({"sweep": {"path": "workload.arrival", "values": [{"kind": "poisson", "rate_per_s": 1}]}},
     "sweep.values: .*a sweep varies one scalar field"),
    ({"sweep": {"path": "sweep.values", "values": [1]}}, "not a field to sweep"),
])
def test_bad_fields_name_the_field_and_the_value(tmp_path: Path, change: dict, expect: str) -> None:
    refused(tmp_path, write(tmp_path, seed_data(**change)), command="both", expect=expect)


def test_token_counts_beyond_what_the_records_hold(tmp_path: Path) -> None:
    data = seed_data()
    data["workload"]["prompt_tokens"] = {"kind": "fixed", "value": 3_000_000_000}
    refused(tmp_path, write(tmp_path, data), command="both", expect=r"less than or equal to 1073741824 \(got 3000000000\)")
    data["workload"]["prompt_tokens"] = {"kind": "fixed", "value": 100}
    data["workload"]["arrival"]["turns"] = 3
    data["workload"]["output_tokens"] = {"kind": "fixed", "value": 1 << 30}
    refused(tmp_path, write(tmp_path, data), command="both", expect="3 turns .* lower the lengths")


def test_sampled_cost_on_an_engine_is_refused_with_the_alternatives(tmp_path: Path) -> None:
    data = seed_data()
    data["servers"][0]["cost"] = {"kind": "sampled", "distribution": {"kind": "exponential", "mean_s": 1}}
    refused(tmp_path, write(tmp_path, data), command="both", expect="only a kind: single_queue .* roofline")


# --------------------------------------------------------------------- traces


@pytest.mark.parametrize(("content", "expect"), [
    (bytes(range(256)) * 8, "trace.csv"),
    (b"", "trace.csv:1: empty"),
    (VIDUR_HEADER + b"0.0,10,10\n0.5,1", r"trace.csv:3: 2 fields"),
    (VIDUR_HEADER + b"0.0,10,10\n0.5,\xff,10\n", r"trace.csv:3: byte 0xff is not UTF-8"),
    (VIDUR_HEADER + b"0.0,10,10\n0.5,3000000000,10\n", "lower the lengths"),
    (VIDUR_HEADER, "no data rows"),
])
def test_bad_traces_are_refused_by_check_and_run(tmp_path: Path, content: bytes, expect: str) -> None:
    refused(tmp_path, trace_scenario(tmp_path, content), command="both", expect=expect)


def test_a_truncated_mooncake_trace_names_its_last_line(tmp_path: Path) -> None:
    row = b'{"timestamp": 0, "input_length": 10, "output_length": 5, "hash_ids": [1]}\n'
    path = trace_scenario(tmp_path, row * 3 + b'{"timestamp": 5, "input_len', "trace.jsonl")
    refused(tmp_path, path, command="both", expect=r"trace.jsonl:4: bad JSON")


def test_a_trace_folder_or_missing_trace_is_refused_by_check(tmp_path: Path) -> None:
    path = trace_scenario(tmp_path, b"", "t.csv")
    (tmp_path / "t.csv").unlink()
    (tmp_path / "t.csv").mkdir()
    refused(tmp_path, path, command="check", expect="workload.arrival.path")
    (tmp_path / "t.csv").rmdir()
    refused(tmp_path, path, command="check", expect="workload.arrival.path")


def test_check_samples_big_files_and_full_scans_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sim.cli import check

    monkeypatch.setattr(check, "SAMPLE_BYTES", 200)
    rows = b"".join(b"%d.0,10,10\n" % i for i in range(100))
    path = trace_scenario(tmp_path, VIDUR_HEADER + rows + b"100.0,ten,10\n")
    code, out = cli("check", str(path))
    assert code == 0, out
    code, out = cli("check", "--full", str(path))
    assert code == 2 and "ten" in out, out


# --------------------------------------------------------------------- --out


def test_out_naming_a_file_or_a_path_through_a_file(tmp_path: Path) -> None:
    scenario = write(tmp_path, seed_data())
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile", tmp_path / "afile" / "deeper" / "results"):
        code, text = cli("run", str(scenario), "--out", str(out))
        assert code == 2 and "is a file, not a folder" in text, text
    code, text = cli("run", str(scenario), "--out", str(tmp_path / "new" / "deeper"))  # parents are made
    assert code == 0, text
    assert (tmp_path / "new" / "deeper" / "results.json").is_file()


# --------------------------------------------------------------------- sizes


@pytest.mark.parametrize(("path", "value", "expect"), [
    ("workload.num_requests", 10**9, "workload.num_requests"),
    ("workload.arrival.users", 10**9, "workload.arrival.users=1000000000"),
    ("servers.2.parallel", 2**63, "parallel"),
    ("servers.2.kv_unified", True, None),
])
def test_runs_too_big_for_memory_are_refused_with_the_estimate(tmp_path: Path, path: str, value: Any, expect: str | None) -> None:
    data = seed_data()
    if path == "servers.2.kv_unified":  # unified: no per-slot split, so only the memory bound stops it
        data["servers"][2].update(parallel=2**62, kv_unified=True)
        expect = "parallel"
    node = data
    *parents, leaf = path.split(".")
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[leaf] = value
    if leaf == "users":
        data["sweep"]["values"] = [value]
    out = refused(tmp_path, write(tmp_path, data), command="both", expect=expect or "")
    if "over the limit" in out:
        assert re.search(r"need about [\d.e+]+ GiB of memory .* over the limit of [\d.]+ GiB", out), out


def test_the_memory_limit_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVESIM_MAX_MEMORY_GIB", "0.001")
    assert memory_limit_bytes() == pytest.approx(0.001 * (1 << 30))
    n = int(0.001 * (1 << 30) / BYTES_PER_REQUEST) + 1000
    data = seed_data()
    data["workload"]["num_requests"] = n
    with pytest.raises(ScenarioError, match=r"at most about [\d,]+ requests fit"):
        resolve_servers(parse_scenario(data, "x", str(SEED.parent)).model_copy())
    data["workload"]["num_requests"] = n - 2000
    resolve_servers(parse_scenario(data, "x", str(SEED.parent)))


# --------------------------------------------------------------------- engine start-up rules, valid fixes

FIX = re.compile(r"(?:set |raise )?(\w+) (?:(<=|>=) (\d+)|to ([\d.]+))|(\w+): (true|fp8)")


def fixes(message: str) -> list[tuple[str, Any]]:
    """(field, value) of every fix a refusal suggests, at the bound it names."""
    out = []
    for m in FIX.finditer(message.split(";", 1)[1] if ";" in message else message):
        if m.group(5):
            out.append((m.group(5), True if m.group(6) == "true" else m.group(6)))
        elif m.group(4):
            out.append((m.group(1), float(m.group(4))))
        elif m.group(1) in ("max_model_len", "max_num_batched_tokens", "max_num_seqs", "ctx_size", "parallel",
                            "num_ctx", "num_parallel", "num_gpu_blocks_override", "num_kv_blocks"):
            out.append((m.group(1), int(m.group(3))))
    return out


SERVERS = [
    ("rtx-4090", {"engine": "vllm", "quantization": "awq"}),                               # 128k context: no fit
    ("rtx-4090", {"engine": "vllm", "quantization": "awq", "num_gpu_blocks_override": 1}),
    ("rtx-4090", {"engine": "vllm", "quantization": "awq", "max_model_len": 32768, "gpu_memory_utilization": 0.3}),
    ("h100-sxm", {"engine": "vllm", "max_model_len": 8192, "max_num_batched_tokens": 100, "max_num_seqs": 256}),
    ("h100-sxm", {"engine": "vllm", "max_model_len": 16384, "enable_chunked_prefill": False}),
    ("h100-sxm", {"engine": "vllm", "version": "0.6.0", "max_model_len": 8192, "max_num_batched_tokens": 4096}),
    ("rtx-4090", {"engine": "llama.cpp", "parallel": 1000, "ctx_size": 4096}),
    ("rtx-4090", {"engine": "ollama", "version": "0.5.7", "num_parallel": 64, "num_ctx": 131072}),  # KV beyond the host too
    ("h100-sxm", {"kind": "paged_batching", "num_kv_blocks": 10, "max_model_len": 4096}),
    ("h100-sxm", {"kind": "paged_batching", "enable_chunked_prefill": False, "num_kv_blocks": 1000}),
]


@pytest.mark.parametrize(("hardware", "server"), SERVERS)
def test_every_fix_a_refusal_suggests_is_accepted(hardware: str, server: dict[str, Any]) -> None:
    def scenario(srv: dict[str, Any]) -> Any:
        data = {"name": "x", "model": "llama-3.1-8b", "hardware": hardware, "servers": [srv],
                "workload": {"arrival": {"kind": "poisson", "rate_per_s": 1}, "num_requests": 5,
                             "prompt_tokens": {"kind": "fixed", "value": 8}, "output_tokens": {"kind": "fixed", "value": 8}}}
        return parse_scenario(data)

    with pytest.raises(ScenarioError) as info:
        check_scenario(scenario(server))
    suggested = fixes(str(info.value))
    assert suggested, str(info.value)
    for key, value in suggested:
        check_scenario(scenario({**server, key: value}))  # each fix alone is accepted


def test_vllm_scheduler_refusals_are_vllms() -> None:
    with pytest.raises(ScenarioError, match=r"max_num_batched_tokens \(100\) must be >= max_num_seqs \(256\)"):
        check_scenario(parse_scenario(seed_data(servers=[SERVERS[3][1]], hardware="h100-sxm")))
    with pytest.raises(ScenarioError, match=r"chunked prefill off, max_num_batched_tokens \(8192\) is smaller than max_model_len \(16384\)"):
        check_scenario(parse_scenario(seed_data(servers=[SERVERS[4][1]], hardware="h100-sxm")))
    with pytest.raises(ScenarioError, match=r"block_size: Input should be 1, 8, 16, 32, 64 or 128 \(got 1000000\)"):
        parse_scenario(seed_data(servers=[{"engine": "vllm", "block_size": 1_000_000}]))


def test_check_opens_length_files(tmp_path: Path) -> None:
    data = seed_data()
    data["workload"]["prompt_tokens"] = {"kind": "empirical", "path": "lengths.csv"}
    path = write(tmp_path, data)
    refused(tmp_path, path, command="check", expect="workload: empirical lengths from lengths.csv")
    (tmp_path / "lengths.csv").write_text("num_prefill_tokens,num_decode_tokens\n0,5\n")
    refused(tmp_path, path, command="check", expect="no row with both lengths above 0")
    (tmp_path / "lengths.csv").write_text("num_prefill_tokens,num_decode_tokens\n10,5\n")
    assert cli("check", str(path))[0] == 0


def test_a_bad_cost_profile_file_is_a_clean_error(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_bytes(b"x: \x00\n")
    data = seed_data()
    data["servers"][0]["cost"] = {"kind": "roofline", "profile": str(tmp_path / "p.yaml")}
    refused(tmp_path, write(tmp_path, data), command="both", expect="is not a cost profile file")


@pytest.mark.parametrize(("server", "ok"), [
    ({"engine": "vllm", "quantization": "awq", "max_model_len": 8192, "kv_cache_dtype": "q4_0"}, False),
    ({"engine": "vllm", "quantization": "awq", "max_model_len": 8192, "kv_cache_dtype": "fp8"}, True),
    ({"engine": "llama.cpp", "kv_cache_dtype": "fp8"}, False),
    ({"engine": "llama.cpp", "kv_cache_dtype": "q8_0"}, True),
    ({"engine": "ollama", "kv_cache_dtype": "fp8_e5m2"}, False),
])
def test_each_engine_starts_only_with_its_own_kv_cache_types(server: dict, ok: bool) -> None:
    scenario = parse_scenario(seed_data(servers=[server]), "x", str(SEED.parent))
    if ok:
        resolve_servers(scenario)
    else:
        with pytest.raises(ScenarioError, match="is not a KV-cache type .* starts with; use one of"):
            resolve_servers(scenario)


def test_error_lines_print_brackets_as_text(tmp_path: Path) -> None:
    """The CLI's one error line escapes rich markup: a bad value such as ``[bold]x`` is shown as
    written, not swallowed as a style tag."""
    code, out = cli("run", str(write(tmp_path, seed_data(hardware="[bold]x"))))
    assert code == 2
    assert "[bold]x" in out
