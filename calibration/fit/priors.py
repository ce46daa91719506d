"""Hand priors (calibration/profiles/priors.yaml) and the class priors derived from fitted groups."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import yaml

from calibration.fit.points import FitReport, GroupKey, Point
from calibration.fit.problem import _Problem, _round, _select_and_solve
from calibration.fit.settings import EFFICIENCIES, HAND_PRIORS, OLLAMA_COPIES, PARAMS
from sim.catalog import get_hardware
from sim.profiles import CostParams, CostProfile

# --------------------------------------------------------------------------------------------
# Priors
# --------------------------------------------------------------------------------------------


def _hand_profiles() -> list[CostProfile]:
    data = yaml.safe_load(HAND_PRIORS.read_text())
    entries = data if isinstance(data, list) else data.get("profiles", [data])
    return [CostProfile.model_validate(e) for e in entries]


def hand_prior(engine: str, hardware: str, model: str = "*", fmt: str = "*") -> CostProfile:
    """The hand-written prior (priors.yaml) that applies to a group, by select_profile's rule."""
    kind = get_hardware(hardware).kind if hardware not in ("*",) else "*"
    scored = [(p.specificity(engine, hardware, kind, model, fmt), i, p) for i, p in enumerate(_hand_profiles())]
    scored = [s for s in scored if s[0] >= 0]
    if not scored:
        raise ValueError(f"no hand prior in {HAND_PRIORS.name} applies to {engine} on {hardware}")
    return max(scored, key=lambda s: (s[0], s[1]))[2]


# --------------------------------------------------------------------------------------------
# Class priors
# --------------------------------------------------------------------------------------------


def class_priors(reports: Sequence[FitReport], groups: dict[GroupKey, list[Point]]) -> list[CostProfile]:
    """Per (engine, hardware kind) with fitted groups, one prior profile; and one per
    (engine, hardware kind, weight format), which is more specific (formats differ in what their
    GEMMs run on: int8 MMQ for GGUF quants, fp16 tensor cores for F16).

    * efficiencies: the median over the class's groups that fitted it (the hand prior where
      none did);
    * overheads: fitted on all the class's points pooled (every group weighted the same), with
      the efficiencies fixed at those medians, so that the overheads agree with them (fixed at
      the hand prior where the pooled points cannot identify them).

    Ollama's class priors copy llama.cpp's (Ollama runs llama.cpp's kernels) and say so.
    """
    by_class: dict[tuple[str, str, str], list[FitReport]] = defaultdict(list)
    for r in reports:
        kind = get_hardware(r.key.hardware).kind
        by_class[(r.key.engine, kind, "*")].append(r)
        by_class[(r.key.engine, kind, r.key.weight_format)].append(r)
    out = []
    for (engine, kind, fmt), members in sorted(by_class.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] != "*", kv[0][2])):
        hand = _class_hand_prior(engine, kind)
        values = hand.params.model_dump()
        per_param: dict[str, Any] = {}
        for name in EFFICIENCIES:
            fitted = [(r.profile_id, r.params[name]) for r in members if r.status.get(name, "").startswith("fitted")]
            if fitted:
                vals = [v for _, v in fitted]
                values[name] = _round(float(np.median(vals)))
                per_param[name] = {"median_of": [g for g, _ in fitted], "min": min(vals), "max": max(vals)}
            else:
                per_param[name] = {"hand_prior": hand.id, "reason": "fitted in no group of the class"}
        tables = [(r.profile_id, r.params["decode_batch_scale"]) for r in members if r.params.get("decode_batch_scale")]
        if len(tables) >= 2:  # per batch size, the median multiplier over the groups that measured it
            # (one group alone, e.g. the 2023 V100 build, does not stand for its class)
            knots = sorted({int(b) for _, t in tables for b in t})
            values["decode_batch_scale"] = {
                b: _round(float(np.median([float(t[b]) for _, t in tables if b in t]))) for b in knots}
            per_param["decode_batch_scale"] = {"median_of": [g for g, _ in tables]}
        problem = _Problem.build([(r.key, groups[r.key]) for r in members])
        problem.decode_batch_scale = values.get("decode_batch_scale")
        theta0 = problem.to_theta(CostParams(**values))
        theta, free, why = _select_and_solve(problem, theta0, ("step_overhead_s", "seq_overhead_s"))
        params = problem.to_params(theta)
        params = CostParams(**{n: _round(getattr(params, n)) if n in free else values[n] for n in PARAMS},
                            decode_batch_scale=values.get("decode_batch_scale"))
        for name in ("step_overhead_s", "seq_overhead_s"):
            per_param[name] = (
                {"fitted_on": "all points of the class pooled, efficiencies fixed at the medians"} if name in free
                else {"hand_prior": hand.id, "reason": why.get(name, "not identifiable")}
            )
        errors = problem.relative_errors(params)
        digest = hashlib.sha256("".join(sorted(r.input_hash for r in members)).encode()).hexdigest()
        provenance = {
            "method": "efficiencies: median over the fitted groups that identified them; overheads: fitted "
                      "on the pooled points of the class with those efficiencies (calibration/fit/)",
            "fit_date": datetime.now(UTC).date().isoformat(),
            "input_hash": digest,
            "groups": sorted(r.profile_id for r in members),
            "params": per_param,
            "num_points": len(errors),
            "mape_on_class_points": round(float(np.mean(np.abs(errors))), 4),
            "max_abs_error_on_class_points": round(float(np.max(np.abs(errors))), 4),
            "replaces": hand.id,
        }
        suffix = f"{kind}-{fmt}" if fmt != "*" else kind
        out.append(CostProfile(id=f"fitted-prior-{engine}-{suffix}", engine=engine, hardware=kind,
                               weight_format=fmt, params=params, provenance=provenance))
        if engine == "llama.cpp" and OLLAMA_COPIES:
            copy = {**provenance, "method": f"copy of fitted-prior-llama.cpp-{suffix}: Ollama runs llama.cpp's "
                    "kernels (ENGINES.md A.1); Ollama's own per-request overheads are not in it",
                    "replaces": _class_hand_prior("ollama", kind).id}
            out.append(CostProfile(id=f"fitted-prior-ollama-{suffix}", engine="ollama", hardware=kind,
                                   weight_format=fmt, params=params, provenance=copy))
    return out


def _class_hand_prior(engine: str, kind: str) -> CostProfile:
    scored = [(p.specificity(engine, "", kind, "*", "*"), i, p) for i, p in enumerate(_hand_profiles())]
    scored = [s for s in scored if s[0] >= 0]
    return max(scored, key=lambda s: (s[0], s[1]))[2]


