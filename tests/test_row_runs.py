"""How model.py cuts a dynamic batch into runs with the padding trimmed
(model_repository/router/1/row_runs.py, issue 18): each row in one run, the cheapest plan."""
from __future__ import annotations

import numpy as np
import pytest

from export.repository import backend_module

row_runs = backend_module("row_runs")


def cost(runs, overhead) -> int:
    return sum(overhead + len(members) * width for width, members in runs)


def partitions(items: list):
    """Every way to split `items` into non-empty groups (Bell(n) of them)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for groups in partitions(rest):
        yield [[first], *groups]
        for i in range(len(groups)):
            yield [*groups[:i], [first, *groups[i]], *groups[i + 1:]]


def cheapest_of_all_groupings(lengths, overhead) -> int:
    """The least cost over every grouping of the rows, not only the contiguous ones the plan
    considers: each group runs padded to its longest row."""
    return min(sum(overhead + len(g) * max(lengths[i] for i in g) for g in groups)
               for groups in partitions(list(range(len(lengths)))))


@pytest.mark.parametrize("seed", range(40))
def test_the_plan_covers_every_row_once_at_the_least_cost(seed):
    rng = np.random.default_rng(seed)
    lengths = [int(x) for x in rng.integers(1, 257, size=int(rng.integers(1, 8)))]
    overhead = int(rng.integers(0, 60))
    runs = row_runs.plan_runs(np.array(lengths), overhead)
    assert sorted(int(m) for _, members in runs for m in members) == list(range(len(lengths)))
    assert all(width == max(lengths[m] for m in members) for width, members in runs)
    assert cost(runs, overhead) == cheapest_of_all_groupings(lengths, overhead)


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
