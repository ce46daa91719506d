"""llama-swap groups and the matrix router (issue 20, LOCAL_SERVERS.md §5), tied to the rules.

One explicit group holding every model (swap, exclusive) is today's default group, request for
request; models in a ``swap: false`` group that fit run together and never swap; an exclusive
group stops the other group's process and a non-exclusive one keeps it; a persistent group is
never stopped; the matrix keeps the set with the least eviction cost, the first on ties; groups
whose models cannot run together in VRAM, and bad groups or sets, are refused with the fix.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from pydantic import ValidationError

from sim.catalog import get_hardware
from sim.engines import EngineError
from sim.llamaswap import placement_of, simulate_swap
from sim.requests import Status
from sim.scenario import ScenarioError, parse_scenario
from sim.scenario.servers import LlamaCppSpec, LlamaSwapSpec
from sim.simulation import resolve_servers
from sim.workload import generate_workload, make_client

HW = get_hardware("rtx-4090")
NO_FRONT = {"request_s": 0.0, "token_s": 0.0, "step_s": 0.0}
SMALL, MID, EIGHT = "llama-3.2-3b", "qwen2.5-7b", "llama-3.1-8b"
BIG, FOURTEEN = "qwen2.5-32b", "qwen2.5-14b"  # 20.4 + 10.1 GiB: not together on 24 GiB


def _models(*names: str) -> list[dict]:
    return [{"model": m, "weight": 1 / len(names)} for m in names]


def _workload(n: int, rate: float):
    """``n`` requests of 64 + 16 tokens, evenly spaced at ``rate`` per second (1e6: a burst)."""
    sc = parse_scenario({
        "name": "g", "seed": 1, "model": EIGHT, "hardware": "rtx-4090",
        "workload": {"arrival": {"kind": "constant", "rate_per_s": rate}, "prompt_tokens": {"kind": "fixed", "value": 64},
                     "output_tokens": {"kind": "fixed", "value": 16}, "num_requests": n},
        "servers": [{"engine": "vllm"}],
    })
    return generate_workload(sc.workload, sc.seed, model_context_tokens=8192)


SPACED = 0.05
"""One request every 20 s: longer than any start here (<= 10.25 s at a 5 s poll) plus its service,
so each request finds the previous one finished."""


def _run(swap: dict, model_of: list[int] | np.ndarray, rate: float = SPACED, all_served: bool = True):
    n = len(model_of)
    spec = LlamaCppSpec(ctx_size=4096, frontend=NO_FRONT, llama_swap=swap)
    rec, server = simulate_swap(spec, HW, make_client(_workload(n, rate), n), n, 0, model_of=np.asarray(model_of))
    assert np.all(rec.status[:n] == Status.COMPLETED) or not all_served
    return rec, server


def _counts(server) -> tuple[list[int], list[int]]:
    return [r.loads for r in server.runners], [r.evictions for r in server.runners]


@pytest.mark.parametrize("version", ["v217", "v250"])
@pytest.mark.parametrize("rate", [1e6, 0.3, SPACED])
def test_one_explicit_group_of_every_model_is_the_default_group(version: str, rate: float) -> None:
    models = _models(BIG, FOURTEEN, EIGHT)
    order = np.random.default_rng(3).integers(0, 3, 24)
    plain, p = _run({"version": version, "models": models}, order, rate, all_served=False)  # a burst meets 429s
    grouped, g = _run({"version": version, "models": models,
                       "groups": [{"name": "all", "members": [EIGHT, BIG, FOURTEEN]}]}, order, rate, all_served=False)
    for col in ("arrival_s", "first_token_s", "finish_s", "generated", "status"):
        assert np.array_equal(getattr(plain, col), getattr(grouped, col), equal_nan=True), col
    assert p.swaps == g.swaps and _counts(p) == _counts(g)
    assert placement_of(LlamaSwapSpec(models=models)).default_only()


@pytest.mark.parametrize("version", ["v217", "v250"])
@pytest.mark.parametrize("rate", [1e6, SPACED])
def test_a_swap_false_group_that_fits_never_swaps(version: str, rate: float) -> None:
    n = 12
    alternating = np.arange(n) % 2
    together = {"version": version, "models": _models(EIGHT, MID),
                "groups": [{"name": "pair", "members": [EIGHT, MID], "swap": False}]}
    rec, server = _run(together, alternating, rate)
    assert _counts(server) == ([1, 1], [0, 0]) and server.swaps == 2
    if rate == SPACED:  # after each model's start, no request waits for a load: TTFT below the shorter start
        ttft = rec.first_token_s[:n] - rec.arrival_s[:n]
        assert np.all(ttft[2:] < min(r.load_s for r in server.runners))
    # the default group (one at a time) pays a start per request when the requests are spaced
    _, alone = _run({"version": version, "models": _models(EIGHT, MID)}, alternating, SPACED)
    assert alone.swaps == n and sum(alone.runners[k].evictions for k in range(2)) == n - 1


@pytest.mark.parametrize("version", ["v217", "v250"])
def test_an_exclusive_group_stops_the_other_group_and_a_non_exclusive_one_keeps_it(version: str) -> None:
    n = 10
    alternating = np.arange(n) % 2
    for exclusive in (True, False):
        swap = {"version": version, "models": _models(EIGHT, MID), "groups": [
            {"name": "a", "members": [EIGHT], "exclusive": exclusive},
            {"name": "b", "members": [MID], "exclusive": exclusive}]}
        _, server = _run(swap, alternating)
        loads, evictions = _counts(server)
        if exclusive:  # each request starts its model and stops the other group's
            assert loads == [n // 2, n // 2] and evictions == [n // 2, n // 2 - 1]
        else:
            assert loads == [1, 1] and evictions == [0, 0]


def test_an_exclusive_start_stops_a_non_exclusive_group_but_not_the_reverse() -> None:
    swap = {"version": "v250", "models": _models(EIGHT, MID), "groups": [
        {"name": "a", "members": [EIGHT]}, {"name": "b", "members": [MID], "exclusive": False}]}
    _, server = _run(swap, [1, 0, 1, 0])  # b; a (exclusive) stops b; b starts beside a; a is running
    assert _counts(server) == ([1, 2], [0, 1])


@pytest.mark.parametrize("version", ["v217", "v250"])
def test_a_persistent_group_is_never_stopped(version: str) -> None:
    order = [0, 1, 2, 0, 1, 2, 0, 2, 1, 0]  # SMALL, then FOURTEEN and EIGHT alternating in their swap group
    groups = [{"name": "always", "members": [SMALL], "persistent": True},
              {"name": "pair", "members": [FOURTEEN, EIGHT]}]
    _, server = _run({"version": version, "models": _models(SMALL, FOURTEEN, EIGHT), "groups": groups}, order)
    loads, evictions = _counts(server)
    in_pair = [m for m in order if m != 0]
    switches = 1 + sum(a != b for a, b in pairwise(in_pair))
    assert loads[0] == 1 and evictions[0] == 0
    assert loads[1] + loads[2] == switches and evictions[1] + evictions[2] == switches - 1
    # without persistent: the pair group is exclusive, so each of its starts stops SMALL
    groups[0]["persistent"] = False
    _, server = _run({"version": version, "models": _models(SMALL, FOURTEEN, EIGHT), "groups": groups}, order)
    assert server.runners[0].loads == order.count(0)


def test_the_matrix_keeps_the_set_with_the_least_eviction_cost_first_on_ties() -> None:
    names = [SMALL, MID, EIGHT]  # a, b, c
    exprs = [f"{SMALL} & {MID}", f"{MID} & {EIGHT}", f"{SMALL} & {EIGHT}"]  # a & b, b & c, a & c

    def run(costs: dict[str, float]):
        swap = {"version": "v250", "models": _models(*names), "routing": "matrix",
                "matrix": {"sets": exprs, "evict_costs": costs}}
        return _counts(_run(swap, [0, 1, 2])[1])

    # a then b run together (set a & b evicts nothing); c: "b & c" evicts a, "a & c" evicts b
    assert run({}) == ([1, 1, 1], [1, 0, 0])  # equal costs: the first set written, b & c
    assert run({SMALL: 5}) == ([1, 1, 1], [0, 1, 0])  # a costs more: a & c
    place = placement_of(LlamaSwapSpec(models=_models(*names), routing="matrix",
                                       matrix={"sets": exprs, "evict_costs": {MID: 2, SMALL: 2}}))
    assert place.best_set(2, [0, 1]) == [1, 2]  # a tie again (2 = 2): the first
    assert place.victims(2, [0, 1]) == [0] and place.victims(0, [0, 1]) == []


def test_models_that_cannot_run_together_in_vram_are_refused() -> None:
    cases = [
        ([{"name": "big", "members": [BIG, FOURTEEN], "swap": False}], "group 'big' \\(swap: false\\).*swap: true"),
        ([{"name": "a", "members": [BIG], "exclusive": False}, {"name": "b", "members": [FOURTEEN]}],
         "groups 'a' and 'b'.*exclusive: false.*set exclusive: true"),
        ([{"name": "a", "members": [BIG], "persistent": True}, {"name": "b", "members": [FOURTEEN]}],
         "'a' is persistent"),
    ]
    for groups, message in cases:
        spec = LlamaCppSpec(ctx_size=4096, llama_swap={"models": _models(BIG, FOURTEEN), "groups": groups})
        with pytest.raises(EngineError, match=message):
            simulate_swap(spec, HW, make_client(_workload(2, 1.0), 2), 2, 0)
    matrix = {"models": _models(BIG, FOURTEEN), "routing": "matrix", "matrix": {"sets": [f"{BIG} & {FOURTEEN}"]}}
    with pytest.raises(EngineError, match="matrix set .* need 3"):
        simulate_swap(LlamaCppSpec(ctx_size=4096, llama_swap=matrix), HW, make_client(_workload(2, 1.0), 2), 2, 0)
    # one at a time (two exclusive groups, or | in the matrix) fits: no error
    for swap in ({"models": _models(BIG, FOURTEEN), "groups": [{"name": "a", "members": [BIG]}]},
                 {**matrix, "matrix": {"sets": [f"{BIG} | {FOURTEEN}"]}}):
        _run({"version": "v250", **swap}, [0, 1])
    # through a scenario: a clean ScenarioError naming the server
    sc = parse_scenario({"name": "v", "model": BIG, "hardware": "rtx-4090",
                         "workload": {"arrival": {"kind": "poisson", "rate_per_s": 1}, "num_requests": 2,
                                      "prompt_tokens": {"kind": "fixed", "value": 8},
                                      "output_tokens": {"kind": "fixed", "value": 8}},
                         "servers": [{"engine": "llama.cpp", "ctx_size": 4096, "llama_swap": {
                             "models": _models(BIG, FOURTEEN), "groups": cases[0][0]}}]})
    with pytest.raises(ScenarioError, match="servers.0: .*group 'big'"):
        resolve_servers(sc)


@pytest.mark.parametrize(("swap", "message"), [
    ({"groups": [{"name": "a", "members": [EIGHT]}, {"name": "b", "members": [EIGHT, MID]}]},
     "groups.1 \\('b'\\).members: 'llama-3.1-8b' is already in group 'a'.*drop it from one"),
    ({"groups": [{"name": "a", "members": ["qwen9"]}]}, "groups.0 \\('a'\\).members: 'qwen9' is not in llama_swap.models.*add it"),
    ({"groups": [{"name": "a", "members": []}]}, "groups.0 \\('a'\\).members: the group has no members.*drop the group"),
    ({"groups": [{"name": "a", "members": [EIGHT]}, {"name": "a", "members": [MID]}]}, "give each group its own name"),
    ({"version": "v201", "routing": "matrix", "matrix": {"sets": [EIGHT]}}, "needs llama-swap v202 or later.*version: v202"),
    ({"routing": "matrix"}, "routing: matrix needs matrix"),
    ({"matrix": {"sets": [EIGHT]}}, "set routing: matrix or drop matrix"),
    ({"routing": "matrix", "matrix": {"sets": [f"{EIGHT} & qwen9"]}}, "sets.0: 'qwen9' is not in llama_swap.models"),
    ({"routing": "matrix", "matrix": {"sets": [f"{EIGHT} &"]}}, "sets.0: .*missing at the end; write ids joined"),
    ({"routing": "matrix", "matrix": {"sets": [EIGHT]}}, "qwen2.5-7b in no set.*add a set"),
    ({"routing": "matrix", "matrix": {"sets": [f"{EIGHT} | {MID}"], "evict_costs": {"x": 2}}}, "evict_costs: 'x'"),
])
def test_bad_groups_and_matrices_are_refused_with_the_fix(swap: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LlamaSwapSpec(models=_models(EIGHT, MID), **swap)


def test_a_matrix_set_of_both_models_is_a_swap_false_group() -> None:
    order = np.random.default_rng(5).integers(0, 2, 16)
    both = [EIGHT, MID]
    group, _ = _run({"version": "v250", "models": _models(*both),
                     "groups": [{"name": "both", "members": both, "swap": False}]}, order, 0.3)
    matrix, _ = _run({"version": "v250", "models": _models(*both), "routing": "matrix",
                      "matrix": {"sets": [" & ".join(both)]}}, order, 0.3)
    for col in ("first_token_s", "finish_s"):
        assert np.array_equal(getattr(group, col), getattr(matrix, col)), col
