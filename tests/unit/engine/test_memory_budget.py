"""engine/memory.py: sizes, chunk plans within a budget, the same bounds under any plan."""
from __future__ import annotations

import pytest
import torch

import certnn
from certnn.certify.bounds import bounds_for_spec, make_spec
from certnn.engine.memory import RESERVE_SHARE, MemoryBudgetError, graph_bytes, parse_size, plan_chunks, widest_node
from certnn.errors import ConfigError
from certnn.testing import random_relu_mlp


def test_parse_size():
    assert parse_size("8G") == 8 * 2 ** 30 and parse_size("512M") == 512 * 2 ** 20
    assert parse_size("1.5GB") == int(1.5 * 2 ** 30) and parse_size("2048") == 2048 * 2 ** 20
    for bad in ("", "lots", "-1G", "0", "5X"):
        with pytest.raises(ConfigError, match="--max-memory"):
            parse_size(bad)


def test_plan_shrinks_batch_then_rows_and_keeps_bounds():
    g = certnn.from_torch(random_relu_mlp(2, d=10, h=200, depth=3, out=5).double(), (10,))
    row, w = widest_node(g) * 8 * 12, graph_bytes(g)
    tight = plan_chunks(g, budget=w + 3 * row, batch_size=8, in_use=0)
    assert tight.batch_size <= 3 and tight.max_rows >= 1
    with pytest.raises(MemoryBudgetError, match="raise --max-memory"):
        plan_chunks(g, budget=w + row // 2, batch_size=8, in_use=0)
    x = torch.rand(8, 10, dtype=torch.float64)
    ref = bounds_for_spec(g, make_spec(g, x, 0.05, "inf"), "crown")
    p = plan_chunks(g, budget=w + row * 40, batch_size=8, in_use=0)
    parts = [bounds_for_spec(g, make_spec(g, x[i:i + p.batch_size], 0.05, "inf"), "crown", max_rows=p.max_rows)
             for i in range(0, 8, p.batch_size)]
    assert p.max_rows < 200  # the plan did chunk the 200-wide layers
    assert torch.equal(torch.cat([q[0] for q in parts]), ref[0]) and torch.equal(torch.cat([q[1] for q in parts]), ref[1])


def test_plan_keeps_a_reserve_for_the_allocator_below_the_budget():
    g = certnn.from_torch(random_relu_mlp(2, d=10, h=200, depth=3, out=5).double(), (10,))
    w, used, budget = graph_bytes(g), 50 * 2 ** 20, 80 * 2 ** 20
    p = plan_chunks(g, budget=budget, batch_size=8, max_rows=10 ** 6, in_use=used)
    left = budget - used - w
    assert p.available == left - int(left * RESERVE_SHARE) and p.trim_above == budget - int(left * RESERVE_SHARE)
    planned = used + w + p.batch_size * p.max_rows * p.row_bytes  # the planned tensors stay under trim_above
    assert planned <= p.trim_above < budget
    assert p.max_rows < 200 or p.batch_size < 8  # and the plan did have to chunk to get there
    # one row fits only without the reserve: refused
    with pytest.raises(MemoryBudgetError, match="raise --max-memory"):
        plan_chunks(g, budget=w + (p.row_bytes * 9) // 8, batch_size=1, in_use=0)
