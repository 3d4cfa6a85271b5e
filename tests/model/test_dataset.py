"""Training pairs: deterministic by (base seed, index), cached without changing a bit, served like the service."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.dataset import PairStream, make_pair, pair_spec
from model.skull import CONDITIONS


def test_the_stream_is_a_pure_function_of_seed_and_index() -> None:
    specs = [pair_spec(i, base_seed=3) for i in range(400)]
    assert specs == [pair_spec(i, base_seed=3) for i in range(400)]
    assert specs != [pair_spec(i, base_seed=4) for i in range(400)]
    assert {s.condition for s in specs} == set(CONDITIONS)  # every condition is trained on
    ages = np.array([s.age_y for s in specs])
    assert ages.min() < 1.0 and ages.max() > 17.0
    assert len({s.seed for s in specs}) == len(specs)  # no two heads alike


def test_a_cached_pair_is_the_generated_pair(tmp_path: Path) -> None:
    stream = PairStream(2, base_seed=1, truth_pool=4, cache=tmp_path, omit_probability=0.5)
    fresh = stream[1]  # generated and written
    assert list(tmp_path.glob("*.partial.npz")) == []
    cached = stream[1]  # read back
    again = make_pair(pair_spec(1, 1, 0.5), truth_pool=4)  # generated anew: deterministic
    for pair in (cached, again):
        for name in ("pa", "lateral", "pa_matrix", "lateral_matrix", "hu"):
            np.testing.assert_array_equal(getattr(pair, name), getattr(fresh, name))
        assert pair.spec == fresh.spec
    assert fresh.pa.shape == (1, 256, 256) and fresh.hu.shape == (40, 40, 40)
    assert 0.0 <= fresh.pa.min() and fresh.pa.max() <= 1.0 and fresh.hu.max() > 500
