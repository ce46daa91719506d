"""Figures of docs/parallelism.md: step times under TP, MoE against dense, the vLLM CI multi-GPU
latency cases, and the fitted interconnect parameters. Prints Markdown tables.

    PYTHONPATH=. python bench/parallel_report.py
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from sim.catalog import get_model, resolve_hardware
from sim.costs_parallel import ParallelStepCost
from sim.engines import resolve_server
from sim.scenario.servers import VllmSpec
from sim.shapes import BatchShape

ROOT = Path(__file__).resolve().parent.parent


def tp_table() -> None:
    model, node = get_model("llama-3.1-70b"), resolve_hardware("8x h100-sxm")
    print("\n### Llama-3.1-70B bf16, decode step on H100 SXM (NVSwitch), context 1024 per sequence\n")
    print("| TP | weights/GPU GiB | all-reduce | batch 1 ms | all-reduce share | batch 64 ms | all-reduce share | KV tokens |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for tp in (1, 2, 4, 8):
        try:
            r = resolve_server(VllmSpec(max_model_len=8192, tensor_parallel_size=tp), model, node)
        except ValueError as err:
            print(f"| {tp} | — | refused: {str(err)[:90]}… | | | | | |")
            continue
        assert r.cost is not None
        cells = []
        for b in (1, 64):
            shape = BatchShape(num_decode_seqs=b, num_context_tokens=b * 1024)
            t = r.cost.step_time(shape)
            comm = r.cost.comm_time(b, b) * r.cost.pp if isinstance(r.cost, ParallelStepCost) else 0.0
            cells += [f"{t * 1e3:.2f}", f"{100 * comm / t:.0f} %"]
        print(f"| {tp} | {r.notes['weights_per_gpu_gib']} | {r.notes['all_reduce']} | {' | '.join(cells)} | {r.notes['kv_capacity_tokens']} |")


def moe_table() -> None:
    mixtral = get_model("mixtral-8x7b")
    assert mixtral.moe is not None
    dense = type(mixtral).model_validate({
        **mixtral.model_dump(), "id": "dense-12.9b", "moe": None,
        "intermediate_size": mixtral.moe.experts_per_token * mixtral.moe.expert_intermediate_size})
    node = resolve_hardware("2x h100-sxm")
    costs = {}
    for name, m in (("mixtral", mixtral), ("dense", dense)):
        cost = resolve_server(VllmSpec(max_model_len=8192, tensor_parallel_size=2), m, node).cost
        assert cost is not None
        costs[name] = cost
    print(f"\n### Mixtral-8x7B (46.7 B, {mixtral.num_active_params / 1e9:.1f} B active) vs a dense model of the same "
          f"active size ({dense.num_params / 1e9:.1f} B), bf16, TP2 on H100 SXM, decode, context 512 per sequence\n")
    print("| batch | Mixtral ms | dense ms | ratio | Mixtral ms per token | dense ms per token |")
    print("| --- | --- | --- | --- | --- | --- |")
    for b in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        shape = BatchShape(num_decode_seqs=b, num_context_tokens=b * 512)
        tm, td = costs["mixtral"].step_time(shape), costs["dense"].step_time(shape)
        print(f"| {b} | {tm * 1e3:.2f} | {td * 1e3:.2f} | {tm / td:.2f} | {tm * 1e3 / b:.3f} | {td * 1e3 / b:.3f} |")


def ci_table() -> None:
    cases = json.loads((ROOT / "calibration/data/published/microbenchmarks.json").read_text())
    cases = {c["id"]: c for c in (cases["cases"] if isinstance(cases, dict) and "cases" in cases else cases)}
    print("\n### vLLM CI latency test (8 prompts x 32 tokens, 128 outputs): predicted vs published mean\n")
    print("| case | hardware | setup | predicted s | published s | error | profile |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    runs = [("llama8B_tp1", "llama-3.1-8b", 1), ("llama70B_tp4", "llama-3.1-70b", 4), ("mixtral8x7B_tp2", "mixtral-8x7b", 2)]
    for cid, gpu in (("vllm_ci_h100_latency", "h100-sxm"), ("vllm_ci_h200_latency", "h200")):
        case = cases[cid]
        work = case["workload"]["latency_test"]
        b, prompt, out = work["batch_size"], work["input_tokens"], work["output_tokens"]
        for key, mid, tp in runs:
            r = resolve_server(VllmSpec(max_model_len=4096, tensor_parallel_size=tp), get_model(mid), resolve_hardware(f"{tp}x {gpu}"))
            assert r.cost is not None
            prefill = BatchShape(num_prefill_tokens=b * prompt, num_prefill_seqs=b, prefill_attention_pairs=b * prompt * (prompt + 1) / 2)
            total = r.cost.step_time(prefill) + r.cost.decode_line(b).run_time(b * (prompt + 1), b, out - 1)
            published = case["results"]["latency_ms"][key]["mean"] * 1e-3
            role = " (fitted on)" if tp == 1 else ""
            print(f"| {key}{role} | {gpu} | TP{tp} bf16 | {total:.3f} | {published:.3f} | {100 * (total / published - 1):+.0f} % | {r.profile.id if r.profile else ''} |")


def fits_table() -> None:
    doc = yaml.safe_load((ROOT / "sim/catalog/collectives.yaml").read_text())
    print("\n### Fitted collectives: t = alpha + f(n) S / busbw (sim/catalog/collectives.yaml)\n")
    print("| system | link | library | op | n (per node) | alpha µs | busbw GB/s | used | residual median / p90 / max | source |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in doc["rows"]:
        res = r["residuals"]
        cell = f"{res['median_pct']} / {res['p90_pct']} / {res['max_pct']} %" if res else "2 points, exact"
        if r.get("vidur_cross_check"):
            c = r["vidur_cross_check"]
            cell += f"; on Vidur's sweep {c['median_pct']} / {c['p90_pct']} / {c['max_pct']} %"
        print(f"| {r['system']} | {r['link']} | {r['impl']} | {r['op']} | {r['n']} ({r['gpus_per_node']}) | {r['alpha_us']} | "
              f"{r['busbw_gb_s']} | {'yes' if r['preferred'] else 'no'} | {cell} | {r['source'].split(' (')[0]} |")


if __name__ == "__main__":
    tp_table()
    moe_table()
    ci_table()
    fits_table()
