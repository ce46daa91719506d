"""The capacity planner: minimality of the replica count, the analytic screen as a bound,
prices and energy of the answer, the command line and its errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from sim.catalog.pricing import rental_price
from sim.plan import load_plan, parse_plan, plan
from sim.plan.replicas import make_job, run_job, traffic_of
from sim.plan.search import judge
from sim.scenario import ScenarioError
from sim.simulation import resolve_servers
from sim.costs_parallel import ParallelStepCost

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "plans" / "chat_small.yaml"


def tiny(**changes) -> dict:
    """A plan small enough for the default test run: vLLM on an L40S, Poisson chat traffic."""
    doc = {
        "name": "tiny", "seed": 3, "model": "llama-3.1-8b",
        "traffic": {"workload": {"arrival": {"kind": "poisson", "rate_per_s": 30},
                                 "prompt_tokens": {"kind": "uniform", "low": 64, "high": 512},
                                 "output_tokens": {"kind": "uniform", "low": 16, "high": 256},
                                 "num_requests": 300, "timeout_s": 60}},
        "slo": {"ttft_ms": {"p99": 800}, "tpot_ms": {"p99": 45}},
        "candidates": {"servers": [{"name": "vllm", "engine": "vllm", "version": "0.11.0", "max_model_len": 8192}],
                       "hardware": ["l40s"], "replicas": {"min": 1, "max": 16}},
        "search": {"seeds": 2, "rel_tol": 0.1},
    }
    doc.update(changes)
    return doc


@pytest.fixture(scope="module")
def tiny_result():
    return plan(parse_plan(tiny()))


def test_replica_count_is_minimal_on_the_same_seeds(tiny_result):
    spec = tiny_result.plan
    (c,) = tiny_result.planned
    n = c.figures["replicas"]
    assert n >= 2, "the tiny plan should need more than one replica for this test to bite"
    traffic = traffic_of(spec)
    bounds = spec.slo.bounds()

    def verdict(replicas: int):
        load = traffic.per_replica(replicas)
        runs = [run_job(make_job(spec, traffic, spec.candidates.servers[0], "l40s", load, spec.seed + k))
                for k in range(spec.search.seeds)]
        return judge(load, runs, bounds, spec.search.confidence)

    at, fewer = verdict(n), verdict(n - 1)
    assert at.passed and not fewer.passed
    # the planner judged exactly these simulations (same seeds, same numbers)
    assert at.means == {k: c.outcome.plan_point.means[k] for k in bounds}
    assert c.outcome.below is not None and not c.outcome.below.passed
    # the bisection's bracket is as narrow as asked, and its lower end passed
    lo, hi = c.outcome.bracket
    assert lo < hi <= lo * (1 + spec.search.rel_tol)


def test_analytic_capacity_bounds_the_simulated_throughput(tiny_result):
    (c,) = tiny_result.planned
    v = c.outcome.plan_point
    assert v.means["request_throughput"] <= c.screen.capacity
    assert c.outcome.max_load <= c.screen.capacity  # no replica sustains more than it can serve


def test_cost_and_energy_figures_follow_from_price_and_throughput(tiny_result):
    (c,) = tiny_result.planned
    f = c.figures
    price = rental_price("l40s").usd_per_gpu_hour
    assert c.price["usd_per_gpu_hour"] == price and c.price["source"].startswith("http")
    assert f["usd_per_hour"] == pytest.approx(f["replicas"] * price)
    assert f["usd_per_million_output_tokens"] == pytest.approx(f["usd_per_hour"] / (f["output_tokens_per_s"] * 3600) * 1e6)
    assert f["output_tokens_per_s"] == pytest.approx(f["replicas"] * c.outcome.plan_point.means["output_throughput"])
    assert f["tokens_per_joule"] == pytest.approx(f["output_throughput"] / f["watts_per_replica"])
    assert 0 <= f["headroom"] == pytest.approx(f["replicas"] * c.outcome.max_load / 30 - 1)
    # the CI is reported for every bounded metric (two seeds: a finite interval)
    assert all(math.isfinite(h) for h in c.outcome.plan_point.half_widths.values())
    assert tiny_result.simulations == c.simulations == sum(1 for _ in range(c.simulations))


def test_growth_scales_the_target_and_more_replicas_follow(tiny_result):
    grown = plan(parse_plan(tiny(traffic={**tiny()["traffic"], "growth": 2.0})))
    assert traffic_of(grown.plan).target == pytest.approx(60)
    assert grown.planned[0].figures["replicas"] >= tiny_result.planned[0].figures["replicas"]


def test_owned_hardware_adds_energy_at_pue():
    owned = {"offering": "owned", "years": 3, "usd_per_kwh": 0.12, "pue": 1.5,
             "overrides": {"l40s": {"usd_purchase": 9000}}}
    r = plan(parse_plan(tiny(pricing=owned, slo={"ttft_ms": {"p99": 5000}}, search={"seeds": 1, "rel_tol": 0.3})))
    (c,) = r.planned
    watts = c.figures["watts_per_replica"]
    per_unit = 9000 / (3 * 8760) + watts / 1000 * 1.5 * 0.12
    assert c.figures["usd_per_hour"] == pytest.approx(c.figures["replicas"] * per_unit)


def test_screen_skips_candidates_that_cannot_beat_the_cheapest():
    doc = tiny()
    doc["candidates"]["hardware"] = ["l40s", "h200"]
    doc["search"] = {"seeds": 1, "rel_tol": 0.3, "screen_margin": 0.0}
    r = plan(parse_plan(doc))
    statuses = {c.hardware: c for c in r.candidates}
    skipped = [c for c in statuses.values() if c.status == "screened out"]
    for c in skipped:
        assert c.simulations == 0 and c.figures["analytic_floor_usd_per_hour"] > r.cheapest.figures["usd_per_hour"]


@pytest.mark.parametrize("change, message", [
    ({"candidates": {"servers": [{"engine": "ollama"}], "hardware": ["l40s"], "tensor_parallel": [1, 2]}}, "only vLLM"),
    ({"candidates": {"servers": [{"engine": "vllm"}], "hardware": ["l40s"], "tensor_parallel": [2, 2]}}, "distinct"),
    ({"candidates": {"servers": [{"engine": "vllm", "tensor_parallel_size": 2}], "hardware": ["l40s"]}},
     "candidates.tensor_parallel"),
    ({"pricing": {"offering": "owned"}}, "years"),
    ({"slo": {}}, "at least one bound"),
    ({"traffic": {"workload": {"arrival": {"kind": "constant", "rate_per_s": 1}, "num_requests": 5,
                               "prompt_tokens": {"kind": "fixed", "value": 8}, "output_tokens": {"kind": "fixed", "value": 8}}}},
     "not plannable"),
])
def test_bad_plans_get_a_clean_error(change, message):
    with pytest.raises(ScenarioError, match=message):
        parse_plan(tiny(**change))


def test_cli_writes_the_plan_and_refuses_bad_files(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sim", "plan", str(EXAMPLE), "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "plan.json").read_text())
    assert doc["cheapest"] in proc.stdout and doc["simulations"] > 0
    assert (tmp_path / "pareto.png").stat().st_size > 10_000 and (tmp_path / "plan.csv").is_file()
    assert set(doc["pareto_front"]) <= {c["candidate"] for c in doc["candidates"] if c["status"] == "planned"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("growth: 1.0", "growth: -1"))
    proc = subprocess.run([sys.executable, "-m", "sim", "plan", str(bad)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "traffic.growth" in proc.stderr and "Traceback" not in proc.stderr
    assert load_plan(EXAMPLE).name == "chat-small"


def test_plan_is_the_same_whatever_number_of_searches_run_at_once():
    doc = tiny()
    doc["candidates"]["hardware"] = ["l40s", "a100-80gb-sxm", "h100-sxm"]
    doc["candidates"]["servers"].append({"name": "ollama", "engine": "ollama", "version": "0.5.7"})
    doc["search"] = {"seeds": 1, "rel_tol": 0.3, "screen_margin": 0.2}
    spec = parse_plan(doc)
    one, three = plan(spec, width=1), plan(spec, width=3)
    assert json.dumps(one.to_json(), default=float) == json.dumps(three.to_json(), default=float)
    assert {c.status for c in one.candidates} >= {"planned", "screened out"}


def test_mm1_replicas_sustain_what_queueing_theory_says():
    """Degenerate candidate: one slot, exponential whole-request service (M/M/1 per replica).
    Mean sojourn 1/(mu - lambda) <= 0.5 s gives lambda* = mu - 2 = 8 req/s; 20 req/s need 3."""
    mu = 10.0
    doc = tiny(slo={"e2el_ms": {"mean": 500}})
    doc["traffic"]["workload"].update(num_requests=3000, arrival={"kind": "poisson", "rate_per_s": 20})
    doc["traffic"]["workload"].pop("timeout_s")
    doc["candidates"]["servers"] = [{"name": "mm1", "kind": "single_queue", "num_parallel": 1, "max_queue": 100000,
                                     "cost": {"kind": "sampled", "distribution": {"kind": "exponential", "mean_s": 1 / mu}}}]
    doc["search"] = {"seeds": 3, "rel_tol": 0.03}
    r = plan(parse_plan(doc))
    (c,) = r.planned
    assert c.outcome.max_load == pytest.approx(mu - 2, rel=0.08)
    assert c.figures["replicas"] == math.ceil(20 / (mu - 2))
    at = c.outcome.plan_point
    assert at.means["mean_e2el_ms"] == pytest.approx(1e3 / (mu - at.load), rel=0.1)  # M/M/1 sojourn


def test_closed_loop_users_are_split_over_replicas_and_the_count_is_minimal():
    doc = tiny(slo={"ttft_ms": {"p99": 300}})
    doc["traffic"] = {"workload": {"arrival": {"kind": "closed_loop", "users": 40, "think_time_s": 1.0},
                                   "prompt_tokens": {"kind": "fixed", "value": 256},
                                   "output_tokens": {"kind": "fixed", "value": 64}, "num_requests": 300}}
    doc["candidates"]["servers"] = [{"name": "ollama", "engine": "ollama", "version": "0.5.7"}]
    doc["search"] = {"seeds": 1}
    r = plan(parse_plan(doc))
    (c,) = r.planned
    n = c.figures["replicas"]
    assert r.traffic.kind == "users" and c.outcome.plan_point.load == math.ceil(40 / n)
    assert float(c.outcome.max_load).is_integer()
    if n > 1:
        assert c.outcome.below.load == math.ceil(40 / (n - 1)) and not c.outcome.below.passed


def test_tensor_parallel_candidates_are_priced_and_powered_per_gpu(tiny_result):
    """TP 2 on L40S: a replica is two GPUs (price and power x 2, power fit per GPU at half the
    batch), simulated as the scenario ``2x l40s`` with tensor_parallel_size 2; the TP 1 candidate
    is unchanged by the TP 2 one beside it (exactly the plan without it)."""
    from sim.catalog.power import power_model

    doc = tiny()
    doc["candidates"]["tensor_parallel"] = [1, 2]
    doc["search"] = {"seeds": 2, "rel_tol": 0.1, "screen_margin": 1e9}
    r = plan(parse_plan(doc))
    by_tp = {c.gpus_per_replica: c for c in r.candidates}
    one, two = by_tp[1], by_tp[2]
    assert (one.name, two.name) == ("vllm@l40s", "vllm-tp2@l40s")
    assert one.status == two.status == "planned"
    assert one.figures == tiny_result.planned[0].figures and one.simulations == tiny_result.planned[0].simulations
    f, price = two.figures, rental_price("l40s").usd_per_gpu_hour
    assert f["usd_per_hour"] == pytest.approx(f["replicas"] * 2 * price)
    batch = two.outcome.plan_point.means["running_batch"]
    assert f["watts_per_replica"] == pytest.approx(2 * power_model("l40s", 2).watts(batch / 2))
    # its service comes from the parallel cost model: a run of the 2-GPU scenario gives the plan's numbers
    spec, traffic = r.plan, traffic_of(r.plan)
    server = spec.candidates.servers[0].model_copy(update={"tensor_parallel_size": 2})
    load = two.outcome.plan_point.load
    runs = [run_job(make_job(spec, traffic, server, "2x l40s", load, spec.seed + k)) for k in range(2)]
    assert judge(load, runs, spec.slo.bounds(), spec.search.confidence).means == {
        k: two.outcome.plan_point.means[k] for k in spec.slo.bounds()}
    resolved = resolve_servers(make_job(spec, traffic, server, "2x l40s", load, spec.seed).scenario)[0]
    assert isinstance(resolved.cost, ParallelStepCost) and resolved.cost.tp.n == 2
    # two GPUs hold more KV and step faster: the analytic capacity per replica is higher
    assert two.screen.capacity > one.screen.capacity


def test_a_tensor_parallel_size_vllm_refuses_is_a_clean_error_naming_the_candidate():
    doc = tiny()
    doc["candidates"]["tensor_parallel"] = [1, 3]  # Llama-3.1-8B: 32 heads, not divisible by 3
    with pytest.raises(ScenarioError, match=r"candidates vllm-tp3@l40s: .*divisible by tensor parallel size \(3\)"):
        plan(parse_plan(doc))
