"""Fleets tied to the single server and to queueing theory (issue 18, FLEETS.md §5, §9)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sim.requests import Status
from sim.scenario import ScenarioError
from sim.simulation import run_server
from sim.theory import erlang_c, supermarket_sojourn
from tests.core_cases import COLUMNS
from tests.helpers import tiny_scenario

EXP = {"kind": "sampled", "distribution": {"kind": "exponential", "mean_s": 1.0}}


def _same_records(a: Any, b: Any) -> None:
    for name in COLUMNS:
        np.testing.assert_array_equal(getattr(a.recorder, name), getattr(b.recorder, name), err_msg=name)
    for x, y in zip(a.recorder.itl_columns(), b.recorder.itl_columns(), strict=True):
        np.testing.assert_array_equal(x, y)
    assert (a.recorder.now, a.recorder.busy_s, a.recorder.num_passes) == (
        b.recorder.now, b.recorder.busy_s, b.recorder.num_passes)


CASES = [
    ({"kind": "paged_batching", "num_kv_blocks": 40, "block_size": 4, "max_num_seqs": 6,
      "max_num_batched_tokens": 64}, {"kind": "poisson", "rate_per_s": 8.0}, None),
    ({"kind": "paged_batching", "num_kv_blocks": 400, "max_num_seqs": 32, "enable_prefix_caching": True},
     {"kind": "closed_loop", "users": 12, "turns": 3}, 6.0),
    ({"kind": "serial_decode", "parallel": 3, "ctx_size": 600, "batch_size": 48},
     {"kind": "poisson", "rate_per_s": 4.0}, 8.0),
    ({"kind": "single_queue", "num_parallel": 2, "num_ctx": 120, "num_batch": 32, "max_queue": 3},
     {"kind": "poisson", "rate_per_s": 6.0}, 10.0),
    ({"kind": "single_queue", "num_parallel": 2, "cost": EXP}, {"kind": "poisson", "rate_per_s": 1.5}, None),
    ({"engine": "vllm", "num_gpu_blocks_override": 300, "max_num_seqs": 16, "max_model_len": 4096},
     {"kind": "poisson", "rate_per_s": 10.0}, None),  # an engine preset: its front end too
]


@pytest.mark.parametrize("router", ["round_robin", "least_outstanding", "llm_d", "kv_cost"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_one_replica_fleet_is_the_server_bit_for_bit(case: int, router: str) -> None:
    server, arrival, timeout = CASES[case]
    common = {"arrival": arrival, "prompt": {"kind": "uniform", "low": 8, "high": 90},
                  "output": {"kind": "uniform", "low": 2, "high": 40}, "num_requests": 200, "step_s": None, "timeout_s": timeout}
    alone = run_server(tiny_scenario(server, **common))
    fleet = run_server(tiny_scenario({**server, "replicas": 1, "router": {"kind": router}}, **common))
    _same_records(alone, fleet)
    assert fleet.notes["replica_rows"][0]["routed"] == alone.recorder.num_arrived


def _mm1_fleet(router: dict[str, Any], n: int, rho: float, requests: int, seed: int = 0) -> Any:
    return run_server(tiny_scenario(
        {"kind": "single_queue", "num_parallel": 1, "cost": EXP, "replicas": n, "router": router},
        arrival={"kind": "poisson", "rate_per_s": rho * n}, num_requests=requests, step_s=None,
        warmup=requests // 5, seed=seed))


def _sojourn(result: Any) -> float:
    return result.metrics["mean_e2el_ms"] / 1e3


def test_random_splitting_gives_independent_mm1_queues() -> None:
    """Poisson splitting: random routing over N replicas = N M/M/1 queues at λ/N, each
    T = 1/(1-ρ); the replicas share the load evenly (binomial counts)."""
    n, rho, requests = 4, 0.6, 12000
    means = [_sojourn(_mm1_fleet({"kind": "random"}, n, rho, requests, seed)) for seed in range(3)]
    assert abs(np.mean(means) - 1 / (1 - rho)) <= 0.08 / (1 - rho)
    rows = _mm1_fleet({"kind": "random"}, n, rho, requests).notes["replica_rows"]
    routed = np.array([r["routed"] for r in rows])
    assert np.all(np.abs(routed - requests / n) <= 4 * np.sqrt(requests * (1 / n) * (1 - 1 / n)))


SUPERMARKET_TOLERANCE = 0.06
"""Relative tolerance of the n = 200 supermarket runs against the n -> inf table (finite-n bias
of a few percent at λ = 0.9 plus the noise of the run)."""


@pytest.mark.parametrize(("lam", "router", "d"), [(0.5, "random", 1), (0.5, "power_of_two", 2)])
def test_supermarket_model_small_load(lam: float, router: str, d: int) -> None:
    """FLEETS.md §5: T_1(0.5) = 2.000, T_2(0.5) = 1.266, n = 200 single-slot exponential servers."""
    got = _sojourn(_mm1_fleet({"kind": router}, 200, lam, 30000))
    assert abs(got - supermarket_sojourn(lam, d)) <= SUPERMARKET_TOLERANCE * supermarket_sojourn(lam, d)


@pytest.mark.slow
@pytest.mark.parametrize(("lam", "router", "d", "requests"),
                         [(0.9, "random", 1, 1_000_000), (0.9, "power_of_two", 2, 200_000)])
def test_supermarket_model_high_load(lam: float, router: str, d: int, requests: int) -> None:
    """FLEETS.md §5: T_1(0.9) = 10.00, T_2(0.9) = 2.614. Each M/M/1 queue at ρ = 0.9 relaxes
    slowly, so d = 1 needs some 5000 requests a queue to come within the tolerance."""
    got = _sojourn(_mm1_fleet({"kind": router}, 200, lam, requests))
    assert abs(got - supermarket_sojourn(lam, d)) <= SUPERMARKET_TOLERANCE * supermarket_sojourn(lam, d)


def test_supermarket_table_values() -> None:
    table = {(0.5, 2): 1.266, (0.9, 2): 2.614, (0.99, 2): 5.432, (0.5, 3): 1.125, (0.95, 3): 2.535, (0.8, 1): 5.0}
    for (lam, d), value in table.items():
        assert supermarket_sojourn(lam, d) == pytest.approx(value, abs=6e-4)


def test_dispatch_ordering_mmn_jsq_p2c_random() -> None:
    """E[T]: M/M/N <= JSQ <= power-of-two <= random = 1/(1-ρ) (Winston 1977), on common
    random numbers; M/M/N from Erlang C."""
    n, rho, requests = 8, 0.9, 20000
    mmn = erlang_c(n, rho * n) / (n - rho * n) + 1.0
    jsq = _sojourn(_mm1_fleet({"kind": "least_outstanding"}, n, rho, requests))
    p2c = _sojourn(_mm1_fleet({"kind": "power_of_two"}, n, rho, requests))
    rnd = _sojourn(_mm1_fleet({"kind": "random"}, n, rho, requests))
    assert mmn == pytest.approx(1.877, abs=1e-3)
    assert mmn * 0.97 <= jsq < p2c < rnd
    assert rnd == pytest.approx(1 / (1 - rho), rel=0.2)


def test_stale_snapshots_herd() -> None:
    """Mitzenmacher 2000: join-the-shortest on a bulletin refreshed every T herds; with an old
    bulletin it loses to two random choices on the same bulletin, with a fresh one it wins."""
    n, rho, requests = 8, 0.8, 12000

    def t(kind: str, interval: float) -> float:
        return _sojourn(_mm1_fleet({"kind": kind, "interval_s": interval}, n, rho, requests))

    fresh, old = t("least_loaded", 0.1), t("least_loaded", 8.0)
    assert fresh < t("power_of_two", 0.1)
    assert old > t("power_of_two", 8.0)
    assert fresh < t("least_loaded", 2.0) < old


def test_conservation_and_totals_fleet_wide() -> None:
    server = {"kind": "paged_batching", "num_kv_blocks": 300, "max_num_seqs": 16, "replicas": 3,
              "router": {"kind": "llm_d", "concurrency": 1, "service_s": 0.02, "max_queue": 2}}
    result = run_server(tiny_scenario(server, arrival={"kind": "poisson", "rate_per_s": 60.0}, prompt=64,
                                      output=16, num_requests=800, step_s=None, timeout_s=5.0))
    rec, rows = result.recorder, result.notes["replica_rows"]
    statuses = np.bincount(rec.status, minlength=5)
    assert statuses[Status.IN_FLIGHT] == 0 and statuses.sum() == rec.num_arrived == 800
    assert sum(r["routed"] for r in rows) + result.notes["router_rejected"] == 800
    assert sum(r["completed"] for r in rows) == statuses[Status.COMPLETED]
    assert result.notes["router_rejected"] > 0  # the router station overflowed its queue bound
    assert statuses[Status.REJECTED] == result.notes["router_rejected"] + sum(r["rejected"] for r in rows)
    for r in rows:
        assert 0 <= r["mean_kv_usage"] <= r["p99_kv_usage"] <= 1 and 0 <= r["utilisation"] <= 1


@pytest.mark.parametrize("bad", [
    {"kind": "fleet", "members": []},
    {"kind": "paged_batching", "router": {"kind": "nearest"}},
    {"kind": "paged_batching", "replicas": 0},
    {"kind": "paged_batching", "router": {"kind": "round_robin", "interval_s": 1.0}},
    {"kind": "paged_batching", "router": {"kind": "llm_d", "queue_weight": 0, "kv_weight": 0, "prefix_weight": 0}},
    {"kind": "paged_batching", "router": {"kind": "llm_d", "interval_s": -1}},
    {"kind": "paged_batching", "router": {"kind": "least_loaded", "interval_s": 1e-6}},  # a scrape per microsecond
])
def test_bad_fleet_input_is_a_clean_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ScenarioError) as err:
        tiny_scenario(bad, step_s=None)
    assert "servers.0" in str(err.value)


def _overloaded(server: dict[str, Any], **extra: Any) -> Any:
    return run_server(tiny_scenario(server, arrival={"kind": "poisson", "rate_per_s": 80.0}, prompt=64, output=64,
                                    num_requests=600, step_s=None, **extra))


def test_vllm_rejects_only_with_max_num_queued_reqs() -> None:
    """vLLM never rejects by default; with --max-num-queued-reqs it answers 503 past that many
    requests in flight (waiting + running), and never holds more."""
    base = {"engine": "vllm", "num_gpu_blocks_override": 400, "max_num_seqs": 8, "max_model_len": 4096,
            "cost": {"kind": "constant", "step_s": 0.02}}
    assert _overloaded(base).metrics["rejected"] == 0
    capped = _overloaded({**base, "max_num_queued_reqs": 12})
    rec = capped.recorder
    assert capped.metrics["rejected"] > 0
    done = rec.status == Status.COMPLETED
    events = sorted([(t, 1) for t in rec.arrival_s[done]] + [(t, -1) for t in rec.finish_s[done]], key=lambda e: (e[0], e[1]))
    # admitted at the pass boundary after arrival: by arrival time, at most the arrivals of one
    # pass (0.02 s) more than the cap are inside
    arrivals = np.sort(rec.arrival_s)
    one_pass = int(np.max(np.searchsorted(arrivals, arrivals + 0.02) - np.arange(arrivals.size)))
    assert 12 <= max(np.cumsum([e[1] for e in events])) <= 12 + one_pass


def test_retries_are_attempts_not_requests() -> None:
    """A refused request retried by its client is the same request: arrivals stay the number
    of requests, attempts grow, and retries turn refusals into completions."""
    server = {"engine": "vllm", "num_gpu_blocks_override": 400, "max_num_seqs": 8, "max_model_len": 4096,
              "cost": {"kind": "constant", "step_s": 0.02}, "max_num_queued_reqs": 12, "replicas": 2}
    plain = _overloaded({**server, "router": {"kind": "round_robin"}})
    retried = _overloaded({**server, "router": {"kind": "round_robin", "retries": 2, "retry_backoff_s": 0.2}})
    assert plain.recorder.num_arrived == retried.recorder.num_arrived == 600
    assert retried.notes["attempts"] == 600 + retried.notes["retries"] and retried.notes["retries"] > 0
    assert retried.metrics["rejected"] < plain.metrics["rejected"]
    assert np.count_nonzero(retried.recorder.status == Status.IN_FLIGHT) == 0


def test_llm_d_sheds_only_sheddable_requests_when_saturated() -> None:
    server = {"engine": "vllm", "num_gpu_blocks_override": 400, "max_num_seqs": 8, "max_model_len": 4096,
              "cost": {"kind": "constant", "step_s": 0.02}, "replicas": 2}
    default = _overloaded({**server, "router": {"kind": "llm_d"}})
    shedding = _overloaded({**server, "router": {"kind": "llm_d", "sheddable_fraction": 0.5}})
    assert default.metrics["rejected"] == 0 and default.notes["shed_429"] == 0  # priority 0: never shed
    assert 0 < shedding.notes["shed_429"] == shedding.metrics["rejected"]
    ids = np.flatnonzero(shedding.recorder.status == Status.REJECTED)
    assert np.all((ids * 0.6180339887498949) % 1.0 < 0.5)  # only the sheddable ones


def _pd(prompt: int, **kv: Any) -> Any:
    pool = {"kind": "paged_batching", "max_model_len": 16384, "cost": {"kind": "constant", "step_s": 0.1}}
    fleet = {"kind": "fleet", "prefill": {**pool, "replicas": 1}, "decode": {**pool, "replicas": 2},
             "kv_transfer": kv}
    return run_server(tiny_scenario(fleet, prompt=prompt, output=5, num_requests=1, step_s=None))


def test_kv_transfer_size_follows_the_model_layout() -> None:
    """bytes = layers x 2 x kv_heads x head_dim x dtype bytes x tokens: Llama-3.1-8B 128 KiB a
    token in bf16; Llama-3.1-70B 320 KiB, so 128k tokens = 40 GiB (FLEETS.md §6)."""
    from sim.catalog import get_model

    result = _pd(1000)
    assert result.notes["kv_bytes_per_token"] == 128 * 1024
    assert result.notes["kv_transferred_gb"] == pytest.approx(1000 * 128 * 1024 / 1e9)
    big = get_model("llama-3.1-70b")
    assert big.kv_bytes_per_token(2) * 128 * 1024 == 40 * 2**30


def test_pd_ttft_is_prefill_plus_transfer_plus_one_decode_step() -> None:
    """NixlConnector pull: TTFT = P's prefill pass + two proxy hops + setup + bytes/bandwidth +
    D's one-token recompute pass; push drops the hops; prompts under the selective threshold
    are prefilled on D alone."""
    kv = 1000 * 128 * 1024
    pull = _pd(1000, bandwidth_gb_s=10.0, setup_s=0.002, hop_s=0.001)
    assert pull.metrics["mean_ttft_ms"] == pytest.approx((0.1 + 0.002 + 0.002 + kv / 10e9 + 0.1) * 1e3)
    push = _pd(1000, connector="p2p_push", bandwidth_gb_s=10.0, setup_s=0.002, hop_s=0.001)
    assert push.metrics["mean_ttft_ms"] == pytest.approx((0.1 + 0.002 + kv / 10e9 + 0.1) * 1e3)
    local = _pd(1000, threshold_tokens=1000)
    assert local.metrics["mean_ttft_ms"] == pytest.approx(100.0) and local.notes["local_prefills"] == 1


def test_pd_link_from_the_hardware_catalog() -> None:
    """kv_transfer.link takes the catalog interconnect's per-direction bandwidth: the same TTFT as
    giving that bandwidth by hand; an unknown link or both at once are clean errors."""
    from sim.catalog.interconnects import get_link

    gb_s = get_link("nvlink4-nvswitch").per_direction_gb_s
    by_link = _pd(1000, link="nvlink4-nvswitch", setup_s=0.002, hop_s=0.001)
    by_hand = _pd(1000, bandwidth_gb_s=gb_s, setup_s=0.002, hop_s=0.001)
    assert by_link.metrics["mean_ttft_ms"] == by_hand.metrics["mean_ttft_ms"]
    assert by_link.notes["kv_link"] == f"nvlink4-nvswitch: {gb_s:g} GB/s"
    with pytest.raises(ScenarioError, match="kv_transfer.link: unknown interconnect 'warp-drive'; valid: "):
        _pd(1000, link="warp-drive")
    with pytest.raises(ScenarioError, match="link .*or bandwidth_gb_s, not both"):
        _pd(1000, link="nvlink4-nvswitch", bandwidth_gb_s=10.0)


def test_pd_pools_must_move_kv() -> None:
    for bad in ({"kind": "fleet", "prefill": {"engine": "ollama"}, "decode": {"engine": "vllm"}},
                {"kind": "fleet", "prefill": {"engine": "vllm"}},
                {"kind": "fleet", "prefill": {"engine": "vllm", "kv_cache_dtype": "fp8"}, "decode": {"engine": "vllm"}}):
        with pytest.raises(ScenarioError, match="servers.0"):
            tiny_scenario(bad, step_s=None)


def test_heterogeneous_members_behind_one_router() -> None:
    fleet = {"kind": "fleet", "name": "mixed", "router": {"kind": "least_outstanding"}, "members": [
        {"kind": "paged_batching", "num_kv_blocks": 300, "max_num_seqs": 16, "replicas": 2},
        {"kind": "serial_decode", "name": "llama", "parallel": 2, "ctx_size": 2000}]}
    result = run_server(tiny_scenario(fleet, arrival={"kind": "poisson", "rate_per_s": 20.0}, prompt=64, output=16,
                                      num_requests=300, step_s=None))
    rows = result.notes["replica_rows"]
    assert [r["server"] for r in rows] == ["paged_batching", "paged_batching", "llama"]
    assert result.server == "mixed" and sum(r["routed"] for r in rows) == 300 == result.metrics["completed"]


def test_independent_replicas_on_their_own_clocks_give_the_same_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """Routers on their own counters over an open-loop workload never let one replica affect
    another, so the fleet runs each replica on its own clock, one after the other; interleaving
    them on one clock gives the same per-request records."""
    from sim.fleet.dispatch import Fleet

    server = {"kind": "paged_batching", "num_kv_blocks": 300, "max_num_seqs": 16, "replicas": 4,
              "router": {"kind": "random"}}
    common = {"arrival": {"kind": "poisson", "rate_per_s": 40.0}, "prompt": {"kind": "uniform", "low": 20, "high": 400},
              "output": {"kind": "uniform", "low": 5, "high": 80}, "num_requests": 1500, "step_s": None, "timeout_s": 5.0}
    apart = run_server(tiny_scenario(server, **common))
    monkeypatch.setattr(Fleet, "independent", property(lambda self: False))
    together = run_server(tiny_scenario(server, **common))
    for name in COLUMNS:
        np.testing.assert_array_equal(getattr(apart.recorder, name), getattr(together.recorder, name), err_msg=name)
    assert apart.recorder.busy_s == pytest.approx(together.recorder.busy_s, rel=1e-12)
    assert [r["routed"] for r in apart.notes["replica_rows"]] == [r["routed"] for r in together.notes["replica_rows"]]


def test_prefill_keeps_the_kv_until_decode_has_pulled_it() -> None:
    """P's pool holds one 1000-token prompt (63 blocks of 16): over a slow link (0.05 GB/s, 2.6 s
    for 131 MB) the second prompt can start on P only when the first one's KV has been pulled."""
    pool = {"kind": "paged_batching", "cost": {"kind": "constant", "step_s": 0.1}}
    fleet = {"kind": "fleet", "prefill": {**pool, "num_kv_blocks": 64}, "decode": {**pool, "num_kv_blocks": 400},
             "kv_transfer": {"bandwidth_gb_s": 0.05, "setup_s": 0.0, "hop_s": 0.0}}
    result = run_server(tiny_scenario(fleet, arrival={"kind": "constant", "rate_per_s": 100.0}, prompt=1000,
                                      output=3, num_requests=2, step_s=None))
    xfer = 1000 * 128 * 1024 / 0.05e9
    ttft = result.recorder.first_token_s - result.recorder.arrival_s
    assert ttft[0] == pytest.approx(0.1 + xfer + 0.1)
    assert ttft[1] >= 0.1 + xfer + 0.1 + xfer - 0.01  # waited for the first pull before its own prefill


def test_a_fleet_too_large_to_build_is_refused_by_check() -> None:
    """replicas is bounded (every replica is built before the first event), so check refuses a
    fleet run would take minutes to build, naming the field and the value."""
    with pytest.raises(ScenarioError, match=r"servers\.0\.replicas.*10000.*1000000"):
        tiny_scenario({"kind": "paged_batching", "num_kv_blocks": 100, "replicas": 1_000_000}, step_s=None)
