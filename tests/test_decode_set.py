"""The implicit decode set against explicit per-request bookkeeping."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sim.requests import Request
from sim.servers.decode_set import DecodeSet


def _blocks(tokens: int, bs: int) -> int:
    return -(-tokens // bs)


@given(
    bs=st.sampled_from([1, 2, 4, 16]),
    members=st.lists(st.tuples(st.integers(1, 60), st.integers(1, 5), st.integers(6, 90)), min_size=1, max_size=12),
    advance=st.integers(0, 20),
    free=st.integers(0, 300),
)
def test_block_counts_match_explicit_requests(bs, members, advance, free) -> None:
    ds = DecodeSet(bs)
    reqs = []
    for i, (prompt, generated, output) in enumerate(members):
        r = Request(id=i, arrival_s=0.0, prompt_tokens=prompt, output_tokens=output + generated)
        r.generated = generated
        ds.add(r)
        reqs.append(r)
    ds.n += advance  # members keep decoding implicitly
    stored = [r.prompt_tokens + r.generated + advance - 1 for r in reqs]
    assert [ds.stored_tokens(r) for r in reqs] == stored
    assert ds.context_tokens == sum(s + 1 for s in stored)

    def need(k0: int, k1: int) -> int:  # blocks for passes k0..k1-1, request by request
        return sum(_blocks(s + k1, bs) - _blocks(s + k0, bs) for s in stored)

    for first, stop in ((0, 1), (2, 7), (1, advance + 1), (3, 3 + 2 * bs - 1), (5, 5)):
        assert ds.new_blocks(stop, first) == need(first, stop)
    k = ds.passes_within_blocks(free, first=1)
    assert need(1, k) <= free < need(1, k + 1)
    for cap in (1, k, k + 1, 2 * k + 3):  # a cap short-cuts the residue walk, never the answer
        assert ds.passes_within_blocks(free, first=1, at_most=cap) == min(k, cap)
