"""Claims as data: intervals and verdicts that can fail."""

import math

import numpy as np
import pytest

from dynn import claims


def test_t_interval_matches_the_textbook_value():
    mean, low, high = claims.t_interval([1.0, 2.0, 3.0])
    # mean 2, sd 1, n 3: half-width t(0.975, 2) * 1 / sqrt(3) = 4.3027 / 1.7321
    assert mean == 2.0 and high - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert mean - low == pytest.approx(high - mean)
    assert math.isnan(claims.t_interval([5.0])[1])


def test_paired_bootstrap_interval_covers_the_mean_and_shrinks_with_more_items():
    rng = np.random.default_rng(0)
    small = rng.normal(1.0, 1.0, 50)
    large = rng.normal(1.0, 1.0, 5000)
    m, lo, hi = claims.paired_bootstrap(small)
    M, LO, HI = claims.paired_bootstrap(large)
    assert lo < m < hi and LO < M < HI
    assert (HI - LO) < (hi - lo) / 5
    assert LO > 0.9 and HI < 1.1


def test_verdict_needs_the_whole_interval_on_one_side():
    assert claims.verdict(0.1, 0.5) is True
    assert claims.verdict(-0.5, -0.1) is False
    assert claims.verdict(-0.1, 0.5) is None
    assert claims.verdict(0.5, 0.9, 1.0, above=False) is True
    assert claims.verdict(math.nan, math.nan) is None


def test_claim_rows_refuse_a_non_verdict_and_render_marks():
    with pytest.raises(ValueError):
        claims.claim("x", "s", paper="p", value=1, ci=None, holds="yes", rule="r")
    row = claims.claim("x", "s", paper="p", value=1, ci=(0.5, 1.5), holds=False, rule="r")
    assert row["ci"] == [0.5, 1.5] and claims.mark(row["holds"]) == "✗"
