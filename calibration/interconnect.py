"""Fit the all-reduce cost model to measured collectives and write ``sim/catalog/collectives.yaml``.

Model (nccl-tests' bus bandwidth, PARALLELISM.md §5.2): one all-reduce of S bytes per rank over
n GPUs takes ``t = alpha + 2(n-1)/n * S / busbw``. Inputs (calibration data, never validation):

* ``calibration/data/vidur/network_medians.csv``: Vidur's NCCL all-reduce and send/recv sweeps
  (2 KiB to 64 MiB, 512 MiB on one node type), medians per size. Fitted by least squares on the
  *relative* error (weights 1/t), so small and large messages count alike; residuals are
  reported as |predicted/measured - 1| (median, 90th percentile, max).
* ``calibration/data/published/allreduce_aiconfigurator.json``: aiconfigurator's summary points
  (NCCL: latency at 8 KiB and bus bandwidth at 512 MiB; vLLM custom all-reduce: times at 8 KiB
  and 1 MiB): two points, two parameters, solved exactly (no residual to report).

Where both sources cover a system (H100 SXM and A100 SXM NCCL) the newer aiconfigurator tables
(NCCL 2.27-2.29, 2025-26) are preferred; Vidur's (2024) rows are kept for comparison.

    python -m calibration.interconnect            # rewrite sim/catalog/collectives.yaml
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
VIDUR = ROOT / "calibration/data/vidur/network_medians.csv"
AICONFIG = ROOT / "calibration/data/published/allreduce_aiconfigurator.json"
OUT = ROOT / "sim/catalog/collectives.yaml"

VIDUR_NODES = {
    # Vidur node -> (catalog hardware id, link class, what it is)
    "h100_dgx": ("h100-sxm", "nvlink4-nvswitch", "8x H100 SXM, NVSwitch (DGX)"),
    "a100_dgx": ("a100-80gb-sxm", "nvlink3-nvswitch", "8x A100 SXM, NVSwitch (DGX)"),
    "h100_pairwise_nvlink": ("h100-nvl", "nvlink-pairs", "4x H100 NVL, NVLink-bridged pairs, PCIe between pairs"),
    "a100_pairwise_nvlink": ("a100-80gb-pcie", "nvlink-pairs", "4x A100 80GB PCIe, NVLink-bridged pairs (Azure NC96ads_A100_v4)"),
}
VIDUR_DATE = "2024-11-19"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fit_alpha_busbw(sizes: np.ndarray, times: np.ndarray, factor: float) -> tuple[float, float, np.ndarray]:
    """(alpha s, busbw B/s, relative residuals) of ``t = alpha + factor * S / busbw`` by weighted
    least squares on the relative error."""
    x = factor * sizes
    w = 1.0 / times
    design = np.vstack([np.ones_like(x), x]).T * w[:, None]
    (alpha, slope), *_ = np.linalg.lstsq(design, times * w, rcond=None)
    predicted = alpha + slope * x
    return float(alpha), float(1.0 / slope), predicted / times - 1.0


def _residuals(rel: np.ndarray) -> dict[str, float]:
    a = np.abs(rel) * 100
    return {"median_pct": round(float(np.median(a)), 1), "p90_pct": round(float(np.percentile(a, 90)), 1),
            "max_pct": round(float(a.max()), 1)}


def _vidur_groups() -> dict[tuple[str, str, int, int], list[tuple[float, float]]]:
    """(node, collective, n, GPUs per node) -> [(bytes, seconds)] of Vidur's medians."""
    groups: dict[tuple[str, str, int, int], list[tuple[float, float]]] = defaultdict(list)
    with VIDUR.open() as f:
        for r in csv.DictReader(f):
            key = (r["node"], r["collective"], int(r["num_workers"]), int(r["devices_per_node"]))
            groups[key].append((float(r["size_bytes"]), float(r["median_ms"]) * 1e-3))
    return groups


def cross_check(row: dict[str, Any]) -> dict[str, float] | None:
    """Residuals of an aiconfigurator row's parameters on Vidur's sweep of the same system and
    group size (other NCCL version, other machine: a check, not a fit)."""
    nodes = [node for node, (hw, link, _) in VIDUR_NODES.items() if hw == row["system"] and link == row["link"]]
    if row["impl"] != "nccl" or not nodes:
        return None
    points = _vidur_groups().get((nodes[0], "all_reduce", row["n"], row["n"]))
    if not points:
        return None
    sizes = np.array([p[0] for p in points])
    times = np.array([p[1] for p in points])
    n = row["n"]
    predicted = row["alpha_us"] * 1e-6 + 2.0 * (n - 1) / n * sizes / (row["busbw_gb_s"] * 1e9)
    return _residuals(predicted / times - 1.0)


def vidur_rows() -> list[dict[str, Any]]:
    """One fitted row per (Vidur node, collective, group size, GPUs per node)."""
    groups = _vidur_groups()
    rows = []
    for (node, op, n, per_node), points in sorted(groups.items()):
        sizes = np.array([p[0] for p in points])
        times = np.array([p[1] for p in points])
        factor = 2.0 * (n - 1) / n if op == "all_reduce" else 1.0
        alpha, busbw, rel = fit_alpha_busbw(sizes, times, factor)
        hardware, link, what = VIDUR_NODES[node]
        rows.append({
            "system": hardware, "link": link if per_node == n else "network",
            "impl": "nccl", "op": op, "n": n, "gpus_per_node": per_node,
            "alpha_us": round(alpha * 1e6, 2), "busbw_gb_s": round(busbw / 1e9, 1),
            "preferred": False,
            "source": f"Vidur {node}/{op}.csv medians ({what}), microsoft/vidur 7d47513, MIT",
            "date": VIDUR_DATE, "points": len(points),
            "sizes_bytes": [int(sizes.min()), int(sizes.max())],
            "residuals": _residuals(rel),
        })
    return rows


def aiconfigurator_rows() -> list[dict[str, Any]]:
    """Exact two-point solutions of the aiconfigurator summary points."""
    doc = json.loads(AICONFIG.read_text())
    rows = []
    for r in doc["rows"]:
        n = r["n"]
        factor = 2.0 * (n - 1) / n
        if r["impl"] == "nccl":
            busbw = r["busbw_512m_gb_s"] * 1e9
            alpha = r["latency_8k_us"] * 1e-6 - factor * 8192 / busbw
        else:
            s0, s1 = 8192.0, float(1 << 20)
            t0, t1 = r["t_8k_us"] * 1e-6, r["t_1m_us"] * 1e-6
            busbw = factor * (s1 - s0) / (t1 - t0)
            alpha = t0 - factor * s0 / busbw
        rows.append({
            "system": r["system"], "link": r["link"], "impl": r["impl"], "op": "all_reduce", "n": n,
            "gpus_per_node": n, "alpha_us": round(alpha * 1e6, 2), "busbw_gb_s": round(busbw / 1e9, 1),
            "preferred": True, "source": f"aiconfigurator {r['software']} ({doc['licence']})",
            "date": doc["date"], "points": 2, "residuals": None,
        })
    for row in rows:
        row["vidur_cross_check"] = cross_check(row)
    return rows


def build() -> dict[str, Any]:
    """The whole collectives table with its provenance."""
    ai = aiconfigurator_rows()
    covered = {(r["system"], r["impl"], r["n"]) for r in ai}
    vidur = vidur_rows()
    for r in vidur:  # Vidur is the only source for its pairwise nodes and for multi-node groups
        if r["op"] == "all_reduce" and r["link"] != "network" and (r["system"], "nccl", r["n"]) not in covered:
            r["preferred"] = True
        if r["op"] == "send_recv" and r["link"] != "network":
            r["preferred"] = True
    return {
        "generated_by": "python -m calibration.interconnect",
        "model": "t = alpha + f(n) * S / busbw; all_reduce f = 2(n-1)/n, send_recv f = 1 (S bytes per rank)",
        "inputs": {str(p.relative_to(ROOT)): _sha(p) for p in (VIDUR, AICONFIG)},
        "rows": ai + vidur,
    }


def main(argv: list[str] | None = None) -> int:
    doc = build()
    header = "# GENERATED by `python -m calibration.interconnect` (do not edit): fitted collectives with provenance.\n"
    OUT.write_text(header + yaml.safe_dump(doc, sort_keys=False, width=120))
    for r in doc["rows"]:
        res = r["residuals"]
        tail = f"  residual median {res['median_pct']}% p90 {res['p90_pct']}% max {res['max_pct']}%" if res else ""
        if r.get("vidur_cross_check"):
            c = r["vidur_cross_check"]
            tail += f"  on Vidur's sweep: median {c['median_pct']}% p90 {c['p90_pct']}% max {c['max_pct']}%"
        print(f"{r['system']:>16} {r['link']:>17} {r['impl']:>6} {r['op']:>10} n={r['n']:<2} "
              f"per-node={r['gpus_per_node']:<2} alpha {r['alpha_us']:7.2f} us busbw {r['busbw_gb_s']:6.1f} GB/s"
              f"{' *' if r['preferred'] else '  '}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
