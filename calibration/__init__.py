"""Calibration of servesim's cost models: measured step times with provenance, and their fits.

Measured data lives under ``calibration/data/`` (see its README for sources and which files are
validation-only); :mod:`calibration.measurements` reads it into :class:`StepMeasurement` rows.
"""

from calibration.measurements import (
    LatencyMeasurement,
    MeasurementError,
    Provenance,
    ServerSummaryRow,
    StepMeasurement,
    file_provenance,
)
from calibration.readers import (
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

__all__ = [
    "LatencyMeasurement",
    "MeasurementError",
    "Provenance",
    "ServerSummaryRow",
    "StepMeasurement",
    "file_provenance",
    "load_manifest",
    "load_measurements",
    "read_batched_bench",
    "read_llama_bench",
    "read_published_latency",
    "read_published_steps",
    "read_server_summary",
    "read_step_csv",
    "read_vidur_attention",
    "read_vidur_mlp",
    "read_vllm_bench_latency",
    "read_vllm_step_bench",
]
