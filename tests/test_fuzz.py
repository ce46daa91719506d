"""Crash hunting: mutated shipped scenarios never give a traceback, and whatever ``check``
accepts, ``run`` runs (tests/mutants.py makes and judges the mutants).

The Hypothesis test (150 mutants) runs in the default suite (well under a minute); ``test_long_fuzz`` (marked
slow) draws 5,000 mutants from a fixed seed and prints the counts: mutants, accepted by check,
crashes, check-accepted runs that failed, hangs.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import mutants

SHIPPED = mutants.load_shipped()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return mutants.bad_files(tmp_path_factory.mktemp("bad"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(which=st.integers(0, len(SHIPPED) - 1), rnd=st.randoms(use_true_random=False))
def test_mutants_are_refused_cleanly_or_run(which: int, rnd: random.Random, files: list[str], tmp_path_factory: pytest.TempPathFactory) -> None:
    name, data = SHIPPED[which]
    mutant, done = mutants.mutate(data, rnd, files)
    path = mutants.write(mutant, tmp_path_factory.mktemp("m") / "mutant.yaml")
    try:
        mutants.outcome(path)  # "refused" or "ran"; anything raised is a crash, a gate failure or a hang
    except BaseException as err:
        raise AssertionError(f"{name} mutated by {done}: {type(err).__name__}: {err}") from err


@pytest.mark.slow
def test_long_fuzz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = mutants.bad_files(tmp_path / "bad")
    rnd, counts, failures = random.Random(20261206), Counter(), []
    for i in range(5000):
        name, data = rnd.choice(SHIPPED)
        mutant, done = mutants.mutate(data, rnd, files)
        path = mutants.write(mutant, tmp_path / f"mutant{i % 8}.yaml")
        counts["mutants"] += 1
        try:
            result = mutants.outcome(path)
        except mutants.Hang:
            counts["hangs"] += 1
            failures.append(f"hang: {name} {done}")
            continue
        except AssertionError as err:
            counts["check accepted, run failed"] += 1
            failures.append(f"gate: {name} {done}: {err}")
            counts["accepted by check"] += 1
            continue
        except Exception as err:  # noqa: BLE001 - a traceback in the CLI
            counts["crashes"] += 1
            failures.append(f"crash: {name} {done}: {type(err).__name__}: {err}")
            continue
        counts["accepted by check"] += result == "ran"
        counts["ran"] += result == "ran"
        counts["refused"] += result == "refused"
    with capsys.disabled():
        print("\nfuzz counts:", dict(counts))
    assert not failures, "\n".join(failures[:20])
