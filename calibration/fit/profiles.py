"""Fitting every group, caching fits by input hash, and writing profile files."""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from calibration.fit.points import (
    FitReport,
    GroupKey,
    Point,
    _Catalog,
    _latency_point,
    _step_point,
    load_points,
    predict,
)
from calibration.fit.priors import class_priors, hand_prior
from calibration.fit.problem import _fit_group
from calibration.fit.settings import (
    DEFAULT_INPUTS,
    FIT_VERSION,
    OLLAMA_COPIES,
    PARAMS,
    PRIORS_FILE,
    PROFILES_DIR,
    RIDGE,
)
from calibration.fit_batching import batched_decode_rows, fit_decode_scale
from calibration.measurements import (
    LatencyMeasurement,
    StepMeasurement,
)
from sim import costs as _costs_module
from sim import engines as _engines
from sim.profiles import CostParams, CostProfile
from sim.shapes import BatchShape


def _code_hash() -> str:
    parts = [
        FIT_VERSION,
        *(f.read_text() for f in sorted(Path(__file__).parent.glob("*.py"))),  # this package
        Path(_costs_module.__file__).with_name("costs.py").read_text(),  # (the source, when compiled)
        Path(__file__).parent.with_name("fit_batching.py").read_text(),
        inspect.getsource(_engines.build_cost),
        inspect.getsource(_engines._weights_read_per_pass),  # noqa: SLF001 - the simulator's formula
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def input_hash(key: GroupKey, points: Sequence[Point], prior: CostProfile) -> str:
    """Content hash of a group's fit: measurements, catalog entries, prior and code."""
    h = hashlib.sha256()
    for part in (repr(key), _Catalog.of(key).digest(), prior.params.model_dump_json(), _code_hash(),
                 *(p.digest() for p in points)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _shape_text(shapes: tuple[BatchShape, ...]) -> str:
    if len(shapes) > 1:
        return f"{len(shapes)} passes"
    s = shapes[0]
    parts = []
    if s.num_prefill_tokens:
        parts.append(f"prefill {s.num_prefill_tokens} tok x {s.num_prefill_seqs} seq past {s.prefill_context_tokens}")
    if s.num_decode_seqs:
        parts.append(f"decode {s.num_decode_seqs} seq ctx {s.num_context_tokens}")
    return ", ".join(parts)


def _point_rows(points: Sequence[Point], fitted: np.ndarray) -> list[dict[str, Any]]:
    return [
        {
            "shape": _shape_text(p.shapes),
            "source": p.source,
            "row": p.label,
            "weight": p.weight,
            "measured_s": float(f"{p.measured_s:.6g}"),
            "fitted_s": float(f"{f:.6g}"),
            "rel_error": round(f / p.measured_s - 1.0, 4),
        }
        for p, f in zip(points, fitted, strict=True)
    ]


def fit_profile(
    measurements: Sequence[StepMeasurement | LatencyMeasurement | Point],
    *,
    engine: str,
    hardware: str,
    model: str,
    weight_format: str,
    threads: int | None = None,
    prior: CostParams | None = None,
) -> tuple[CostProfile, FitReport]:
    """Fit one group's CostParams; returns the profile (with provenance) and its report.

    ``measurements`` are the group's rows (StepMeasurement, LatencyMeasurement or Points);
    ``prior`` defaults to the hand prior of priors.yaml that applies to the group.
    """
    key = GroupKey(engine, hardware, model, weight_format, threads)
    points = []
    for m in measurements:
        if isinstance(m, Point):
            points.append(m)
        elif isinstance(m, LatencyMeasurement):
            points.append(_latency_point(m, m.provenance.source, m.provenance.sha256)[1])
        else:
            points.append(_step_point(m, m.provenance.source, m.provenance.sha256)[1])
    if not points:
        raise ValueError(f"{key}: no measurements to fit")
    hand = hand_prior(engine, hardware, model, weight_format)
    prior_profile = hand if prior is None else CostProfile(id="given-prior", params=prior)
    return _fit(key, points, prior_profile, {})


def _fit(key: GroupKey, points: list[Point], prior: CostProfile, files: dict[str, str]) -> tuple[CostProfile, FitReport]:
    batched = set(batched_decode_rows(key.engine, points))
    base = [p for i, p in enumerate(points) if i not in batched]
    candidates = [n for n in PARAMS if not (batched and base and n == "seq_overhead_s")]
    params, status, stderr = _fit_group(key, base or points, prior.params, candidates)
    if batched and base:  # second stage: one GEMM multiplier per batch size (calibration/fit_batching.py)
        catalog = _Catalog.of(key)
        rows = [points[i] for i in sorted(batched)]
        knots, detail = fit_decode_scale(catalog.cost, predict, params, rows)
        params = params.model_copy(update={"decode_batch_scale": knots})
        status["decode_batch_scale"] = (
            f"fitted per batch size on {len(rows)} pure decode rows with 2+ sequences (the five parameters "
            f"on the other {len(base)} rows): " + "; ".join(
                f"B={b}: x{d['scale']} ({d['rows']} rows, mean error {d['mean_rel_error_before']:+.1%} -> "
                f"{d['mean_rel_error_after']:+.1%})" for b, d in detail.items()))
    fitted = predict(_Catalog.of(key).cost(params), points)
    rows = _point_rows(points, fitted)
    errors = np.array([r["rel_error"] for r in rows])
    digest = input_hash(key, points, prior)
    report = FitReport(
        key=key, profile_id=key.profile_id, params=params.model_dump(exclude_none=True), prior=prior.params.model_dump(exclude_none=True),
        prior_id=prior.id, status=status, points=rows, mape=float(np.mean(np.abs(errors))),
        max_abs_error=float(np.max(np.abs(errors))), num_points=len(points), input_hash=digest, stderr=stderr,
    )
    return _profile(key, params, report, points, files), report


def _profile(key: GroupKey, params: CostParams, report: FitReport, points: Sequence[Point],
             files: dict[str, str]) -> CostProfile:
    used = sorted({p.input_file for p in points} | {p.via for p in points if p.via})
    shas = {p.input_file: p.input_sha256 for p in points}
    inputs = [{"path": f, "sha256": files.get(f) or shas.get(f, "")} for f in used]
    measured = sorted({(p.source, p.software, p.hardware, p.date) for p in points})
    provenance = {
        "method": (
            "scipy.optimize.least_squares on relative pass-time error, squared errors weighted by "
            "sqrt(num_steps); parameters not identifiable from the points fixed at the prior; "
            f"ridge {RIDGE} toward the prior on the free ones (calibration/fit/)"
        ),
        "fit_date": datetime.now(UTC).date().isoformat(),
        "input_hash": report.input_hash,
        "inputs": inputs,
        "measurements": [
            {"source": s, "software": sw, "hardware": hw, "date": d} for s, sw, hw, d in measured
        ],
        "prior": {"id": report.prior_id, **report.prior},
        "status": report.status,
        "relative_stderr": report.stderr,
        "num_points": report.num_points,
        "mape": round(report.mape, 4),
        "max_abs_error": round(report.max_abs_error, 4),
        "residuals": report.points,
    }
    return CostProfile(
        id=key.profile_id, engine=key.engine, hardware=key.hardware, model=key.model,
        weight_format=key.weight_format, threads=key.threads, params=params, provenance=provenance,
    )


def _report_from_profile(key: GroupKey, profile: CostProfile) -> FitReport:
    prov = profile.provenance
    prior = dict(prov.get("prior", {}))
    prior_id = str(prior.pop("id", ""))
    return FitReport(
        key=key, profile_id=profile.id, params=profile.params.model_dump(exclude_none=True), prior=prior, prior_id=prior_id,
        status=dict(prov.get("status", {})), points=list(prov.get("residuals", [])),
        mape=float(prov.get("mape", math.nan)), max_abs_error=float(prov.get("max_abs_error", math.nan)),
        num_points=int(prov.get("num_points", 0)), input_hash=str(prov.get("input_hash", "")), cached=True,
        stderr=dict(prov.get("relative_stderr", {})),
    )


# --------------------------------------------------------------------------------------------
# All groups, with the cache
# --------------------------------------------------------------------------------------------


def _dump(profiles: Sequence[CostProfile]) -> str:
    docs = [p.model_dump(mode="json", exclude_none=True) for p in profiles]
    header = (
        "# Generated by `servesim calibrate` (calibration/fit/); do not edit by hand.\n"
        "# Provenance: inputs with sha256, fit date, residuals per point. Refit: servesim calibrate --force\n"
    )
    body = yaml.safe_dump(docs[0] if len(docs) == 1 else {"profiles": docs}, sort_keys=False, width=120,
                          allow_unicode=True)
    return header + body


def _read_existing(path: Path) -> dict[str, CostProfile]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
        entries = data if isinstance(data, list) else data.get("profiles", [data])
        return {p.id: p for p in (CostProfile.model_validate(e) for e in entries)}
    except Exception:  # noqa: BLE001 - an unreadable old profile is simply refitted
        return {}


@dataclass
class FitRun:
    """Everything one ``calibrate`` run did."""

    reports: list[FitReport]
    priors: list[CostProfile]
    written: list[Path]
    skipped: dict[str, int]
    files: dict[str, str]


def fit_all(
    paths: Iterable[str | Path] = DEFAULT_INPUTS,
    *,
    out: str | Path = PROFILES_DIR,
    force: bool = False,
    with_priors: bool = True,
) -> FitRun:
    """Fit every group found in ``paths`` and write the profiles.

    ``out`` is a folder (one ``fitted-*.yaml`` per group plus ``fitted-priors.yaml``) or a
    ``.yaml`` file (all profiles in one ``{profiles: [...]}``). A group whose ``input_hash``
    equals the existing profile's is not refitted unless ``force``.
    """
    loaded = load_points(paths)
    out = Path(out)
    single = out.suffix in (".yaml", ".yml")
    existing: dict[str, CostProfile] = {}
    if single:
        existing = _read_existing(out)
    elif out.is_dir():
        for f in sorted(out.glob("fitted-*.yaml")):
            existing.update(_read_existing(f))
    profiles, reports = [], []
    for key, points in loaded.groups.items():
        prior = hand_prior(key.engine, key.hardware, key.model, key.weight_format)
        digest = input_hash(key, points, prior)
        old = existing.get(key.profile_id)
        if not force and old is not None and old.provenance.get("input_hash") == digest:
            profiles.append(old)
            reports.append(_report_from_profile(key, old))
            continue
        profile, report = _fit(key, points, prior, loaded.files)
        profiles.append(profile)
        reports.append(report)
    priors = class_priors(reports, loaded.groups) if with_priors else []
    for p in priors:  # keep the old file's fit date when nothing changed
        old = existing.get(p.id)
        if not force and old is not None and old.provenance.get("input_hash") == p.provenance["input_hash"]:
            priors[priors.index(p)] = old
    written = []
    if single:
        text = _dump([q for p in profiles for q in (p, *_ollama_copy(p))] + priors)
        if not out.is_file() or out.read_text() != text:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
            written.append(out)
    else:
        out.mkdir(parents=True, exist_ok=True)
        targets = [(out / f"{p.id}.yaml", [p, *_ollama_copy(p)]) for p in profiles]
        if priors:
            targets.append((out / PRIORS_FILE, priors))
        for path, content in targets:
            text = _dump(content)
            if not path.is_file() or path.read_text() != text:
                path.write_text(text)
                written.append(path)
    _clear_profile_cache()
    return FitRun(reports, [*priors], written, loaded.skipped, loaded.files)


def _ollama_copy(profile: CostProfile) -> list[CostProfile]:
    """Ollama runs llama.cpp's kernels (ENGINES.md A.1): a llama.cpp fit also prices Ollama's
    passes on the same hardware, model and format (written next to it, marked as a copy)."""
    if profile.engine != "llama.cpp" or not OLLAMA_COPIES:
        return []
    provenance = {
        "copy_of": profile.id,
        "reason": "Ollama runs llama.cpp's kernels (ENGINES.md A.1); its own per-request work "
                  "(HTTP, Go scheduler) is not in these numbers",
        "input_hash": profile.provenance.get("input_hash", ""),
        "fit_date": profile.provenance.get("fit_date", ""),
    }
    return [profile.model_copy(update={"id": profile.id + "-as-ollama", "engine": "ollama", "provenance": provenance})]


def _clear_profile_cache() -> None:
    from sim.profiles import load_profiles

    load_profiles.cache_clear()
