"""What the fit fits, its bounds and tolerances, and its default inputs."""

from __future__ import annotations

from pathlib import Path

PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"
HAND_PRIORS = PROFILES_DIR / "priors.yaml"
PRIORS_FILE = "fitted-priors.yaml"
DEFAULT_INPUTS = (
    "calibration/data/this_machine/manifest.yaml",
    "calibration/data/sandbox_zen4/manifest.yaml",
    "calibration/data/published/microbenchmarks.json",
    "calibration/data/gpu/manifest.yaml",
    "calibration/data/published/batched_bench_gpu.json",
)
"""The calibration set: step-level files measured on the developers' machine, the published
microbenchmarks (step rows and vLLM CI latency) and whole forward passes timed on lent H100/H200
GPUs (calibration/gpu/measure_forward.py). Validation data is never among them."""
OLLAMA_COPIES = True
"""Write an Ollama copy of every llama.cpp profile (group fits and class priors)."""
PUBLISHED_LATENCY_CASES = ("vllm_ci_h200_latency", "vllm_ci_h100_latency")
SKIPPED_ENGINES = {
    "vidur-sarathi": (
        "Vidur rows time single operators (linear layers only, or attention only) of one layer "
        "under Vidur's profiler: no LM head, sampling or per-step overhead, and not an engine "
        "servesim simulates; fitting the whole-pass roofline to them would mis-state every "
        "parameter but one"
    ),
}

PARAMS = (
    "bandwidth_efficiency",
    "compute_efficiency",
    "attention_efficiency",
    "step_overhead_s",
    "seq_overhead_s",
)
PRIORITY = (
    "bandwidth_efficiency",
    "compute_efficiency",
    "step_overhead_s",
    "attention_efficiency",
    "seq_overhead_s",
)
"""Order in which parameters are admitted as free (most physically dominant first)."""
EFFICIENCIES = ("bandwidth_efficiency", "compute_efficiency", "attention_efficiency")
EFFICIENCY_BOUNDS = (0.01, 1.2)
OVERHEAD_UNIT = 0.25
"""An overhead's scale: this fraction of the median pass time (per sequence for seq_overhead)."""
IDENTIFY_RMS = 0.03
"""A parameter is free when one unit of it moves the predictions by >= 3 % RMS, after
compensation by the parameters already free."""
RIDGE = 0.01
"""Weight of the pull toward the prior, per unit (a doubling, or an overhead unit)."""
SIG_DIGITS = 4
"""Fitted values are rounded to this many significant digits before residuals are reported."""
FIT_VERSION = "1"
NEEDED_RMS = 0.005
NEEDED_REL = 0.05
"""A free parameter is kept only if fixing it at the prior would raise the weighted RMS relative
error by more than max(NEEDED_RMS, NEEDED_REL x that error)."""
MIN_GEMM_TOKENS = 32
"""compute_efficiency is fitted only from groups with a pass of at least this many tokens.
Smaller passes run matrix-vector kernels (llama.cpp CUDA: MMVQ up to 8 tokens) whose time
grows with the tokens in a way max(memory, compute) cannot express: a compute efficiency
fitted on them alone would price a 512-token prompt many times too slowly."""
LLAMA_CPP_UBATCH = 512
"""Physical pass size of llama.cpp / Ollama (-ub, num_batch) used when pricing measured passes
(the readers already split prompts into physical passes, so no measured pass exceeds it)."""


