"""How model.py cuts a dynamic batch into runs with the padding trimmed
(model_repository/router/1/row_runs.py, issue 18): each row in one run, the cheapest plan."""
from __future__ import annotations

import importlib.util
import itertools

import numpy as np
import pytest

from export.repository import COMMITTED_BACKEND_FILES

_path = next(f for f in COMMITTED_BACKEND_FILES if f.name == "row_runs.py")
_spec = importlib.util.spec_from_file_location("row_runs", _path)
row_runs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(row_runs)


def cost(runs, lengths, overhead) -> int:
    return sum(overhead + len(members) * width for width, members in runs)


def cheapest_by_enumeration(lengths, overhead) -> int:
    """Every cut of the distinct lengths, sorted, into contiguous runs: the least cost."""
    widths = sorted(set(lengths))
    counts = [lengths.count(w) for w in widths]
    best = None
    for cuts in itertools.product((False, True), repeat=len(widths) - 1):
        total, rows = 0, 0
        for i, (width, count) in enumerate(zip(widths, counts)):
            rows += count
            if i == len(widths) - 1 or cuts[i]:
                total, rows = total + overhead + rows * width, 0
        best = total if best is None else min(best, total)
    return best


@pytest.mark.parametrize("seed", range(30))
def test_the_plan_covers_every_row_once_at_the_least_cost(seed):
    rng = np.random.default_rng(seed)
    lengths = [int(x) for x in rng.integers(1, 257, size=int(rng.integers(1, 40)))]
    lengths = [int(rng.choice(lengths[:8])) for _ in lengths]  # few distinct lengths: enumerable
    overhead = int(rng.integers(0, 40))
    runs = row_runs.plan_runs(np.array(lengths), overhead)
    assert sorted(int(m) for _, members in runs for m in members) == list(range(len(lengths)))
    assert all(width == max(lengths[m] for m in members) for width, members in runs)
    assert cost(runs, lengths, overhead) == cheapest_by_enumeration(lengths, overhead)


@pytest.mark.parametrize(("lengths", "expected"), [
    ([30, 30, 30], [(30, [0, 1, 2])]),              # one width: one run
    ([31, 30], [(31, [1, 0])]),                     # one token of padding is cheaper than a run
    ([250, 4], [(4, [1]), (250, [0])]),             # a short row never pays for a long one
])
def test_plans_that_read_plainly(lengths, expected):
    runs = row_runs.plan_runs(np.array(lengths), overhead_tokens=8)
    assert [(width, members.tolist()) for width, members in runs] == expected


def test_real_lengths_end_at_the_last_unmasked_token():
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 1, 0], [0, 0, 0, 0, 0]])
    assert row_runs.real_lengths(mask).tolist() == [3, 5, 4, 1]  # left padding stays; an empty row keeps a column
