"""The Perfetto / Chrome trace export of a timeline (sim.results.perfetto).

The file is checked against the Trace Event Format's documented fields (JSON object form: a
``traceEvents`` list; every event has ``name``, ``ph``, ``pid``, ``tid`` or is a process
counter, ``ts`` in microseconds; ``X`` events a ``dur``; ``i`` events a scope ``s``; ``C``
events numeric ``args``; ``M`` events one of the metadata names with its ``args``), slices never
overlap on a track, and, where Perfetto's trace processor can start (``pip install perfetto``
fetches its binary on first use, which needs the network), the file is loaded with it.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import defaultdict
from pathlib import Path

import fastjsonschema
import pytest

from sim.requests import Status
from sim.results.perfetto import trace_document, write_trace
from sim.results.timeline import record_timeline
from tests.test_timeline_run import CASES, seed_at

_INT = {"type": "integer"}
_NUM = {"type": "number"}
TRACE_EVENT_SCHEMA = {
    "type": "object",
    "required": ["traceEvents"],
    "properties": {
        "traceEvents": {"type": "array", "items": {"$ref": "#/$defs/event"}},
        "displayTimeUnit": {"enum": ["ms", "ns"]},
        "otherData": {"type": "object"},
    },
    "$defs": {
        "event": {
            "type": "object",
            "required": ["name", "ph", "pid"],
            "properties": {"name": {"type": "string"}, "cat": {"type": "string"}, "pid": _INT, "tid": _INT,
                           "ts": _NUM, "args": {"type": "object"}},
            "oneOf": [
                {"properties": {"ph": {"const": "X"}, "ts": {"minimum": 0}, "dur": {"type": "number", "minimum": 0}},
                 "required": ["ts", "dur", "tid"]},
                {"properties": {"ph": {"const": "i"}, "s": {"enum": ["g", "p", "t"]}}, "required": ["ts", "s", "tid"]},
                {"properties": {"ph": {"const": "C"},
                                "args": {"type": "object", "minProperties": 1, "additionalProperties": _NUM}},
                 "required": ["ts", "args"]},
                {"properties": {"ph": {"const": "M"},
                                "name": {"enum": ["process_name", "process_labels", "process_sort_index",
                                                  "thread_name", "thread_sort_index"]}},
                 "required": ["args"]},
            ],
        }
    },
}


validate_trace = fastjsonschema.compile(TRACE_EVENT_SCHEMA)


def assert_valid_trace(doc: dict) -> None:
    """Schema check, and no two slices of one track overlap (they may touch)."""
    validate_trace(doc)
    tracks = defaultdict(list)
    for e in doc["traceEvents"]:
        if e["ph"] == "X":
            tracks[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e["dur"]))
    assert tracks
    for key, slices in tracks.items():
        slices.sort()
        for (_, end), (start, _) in itertools.pairwise(slices):
            assert start >= end, f"overlapping slices on track {key}"


@pytest.fixture(scope="module")
def seed_trace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    timeline = record_timeline(seed_at(5))
    path = write_trace(timeline, tmp_path_factory.mktemp("trace") / "seed_users5.json")
    return path, timeline


def test_seed_trace_follows_the_trace_event_format(seed_trace) -> None:
    path, timeline = seed_trace
    doc = json.loads(path.read_text())
    assert_valid_trace(doc)
    events = doc["traceEvents"]
    names = {e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert names == {f"{s.server}: {s.label}" for s in timeline.servers}
    for pid, s in enumerate(timeline.servers, start=1):
        passes = [e for e in events if e["pid"] == pid and e["ph"] == "X" and e["tid"] == 0]
        assert len(passes) == s.num_passes
        assert sum(e["args"]["decode sequences"] for e in passes) == s.passes["decode_seqs"].sum()
        threads = {e["tid"] for e in events if e["pid"] == pid and e["name"] == "thread_name"}
        assert threads == {0} | {r + 1 for r in range(s.result.recorder.num_arrived)}  # one track per request
        counters = {e["name"] for e in events if e["pid"] == pid and e["ph"] == "C"}
        assert counters == {"batch size", "tokens in flight", "KV occupancy", "queue"}
        ends = [e for e in events if e["pid"] == pid and e["ph"] == "i" and e["name"] == "completed"]
        assert len(ends) == (s.result.recorder.status == Status.COMPLETED).sum()


@pytest.mark.parametrize("broken", [
    {"name": "decode", "ph": "X", "ts": 0, "pid": 1, "tid": 0},  # a slice without its duration
    {"name": "decode", "ph": "X", "ts": 0, "dur": -1, "pid": 1, "tid": 0},
    {"name": "batch size", "ph": "C", "ts": 0, "pid": 1, "args": {"sequences": "four"}},
    {"name": "thread_title", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "x"}},
    {"name": "preempted", "ph": "i", "ts": 0, "pid": 1, "tid": 0},  # an instant without its scope
])
def test_the_schema_check_refuses_events_outside_the_format(broken: dict) -> None:
    with pytest.raises(fastjsonschema.JsonSchemaException):
        validate_trace({"traceEvents": [broken]})


def test_overlapping_slices_are_caught() -> None:
    doc = {"traceEvents": [{"name": "a", "ph": "X", "ts": 0, "dur": 10, "pid": 1, "tid": 0},
                           {"name": "b", "ph": "X", "ts": 9, "dur": 10, "pid": 1, "tid": 0}]}
    with pytest.raises(AssertionError, match="overlapping"):
        assert_valid_trace(doc)


def test_preemptions_are_instants_on_the_request_and_pass_tracks() -> None:
    from sim.results.timeline import Timeline, record_server

    s = record_server(CASES["paged-preempting"])
    doc = trace_document(Timeline("tiny", "llama-3.1-8b", "rtx-4090", {}, [s]))
    assert_valid_trace(doc)
    instants = [e for e in doc["traceEvents"] if e["ph"] == "i"]
    on_requests = [e for e in instants if e["name"] == "preempted"]
    on_passes = [e for e in instants if e["tid"] == 0]
    assert len(on_requests) == s.passes["preemptions"].sum() > 0
    assert sum(int(e["name"].split()[-1]) for e in on_passes) == len(on_requests)


def test_the_trace_loads_in_perfettos_trace_processor(seed_trace) -> None:
    tp_module = pytest.importorskip("perfetto.trace_processor")
    binary = os.environ.get("PERFETTO_TRACE_PROCESSOR")  # a trace_processor_shell, if the download cannot run
    try:
        config = tp_module.TraceProcessorConfig(bin_path=binary) if binary else tp_module.TraceProcessorConfig()
        tp = tp_module.TraceProcessor(trace=str(seed_trace[0]), config=config)
    except Exception as err:  # noqa: BLE001 - no binary here (it is downloaded on first use)
        pytest.skip(f"Perfetto's trace processor cannot start here: {type(err).__name__}")
    timeline = seed_trace[1]
    rows = list(tp.query("select count(*) as n from slice where category = 'pass'"))
    assert rows[0].n == sum(s.num_passes for s in timeline.servers)
    tp.close()
