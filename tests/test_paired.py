"""Paired seed comparisons of a weak variant against "+ target 2D" (evaluation.scores)."""
import math

import numpy as np
import pytest

from weakhand.evaluation import scores


def _by_variant(ref, var, metric="z_err_mm"):
    return {"2d": {s: {metric: v} for s, v in enumerate(ref)},
            "2d_depth": {s: {metric: v} for s, v in enumerate(var)}}


def test_pairing_resolves_a_small_consistent_gain_that_the_seed_spread_hides():
    # seeds move both variants together by +-8 mm; the variant is 1 mm better on every seed
    ref = [40.0, 48.0, 32.0]
    var = [39.0, 47.2, 30.9]
    p = scores.paired_versus(_by_variant(ref, var), "2d_depth")
    assert p["n"] == 3 and p["wins"] == 3
    assert p["diff"] == pytest.approx(-0.9667, abs=1e-3)
    assert p["ci"][1] < 0 and p["verdict"] == "better"
    # the unpaired comparison (difference of means against the larger std) cannot see it
    agg = {v: scores.aggregate([{"z_err_mm": x} for x in xs]) for v, xs in (("2d", ref), ("2d_depth", var))}
    assert scores.versus_2d(agg, "2d_depth")["verdict"] == "within seed spread"


def test_interval_matches_the_t_distribution_and_sign_flips_give_worse():
    rng = np.random.default_rng(0)
    ref = rng.normal(40, 5, 5)
    d = np.array([2.0, 2.5, 1.5, 3.0, 2.0])
    p = scores.paired_versus(_by_variant(list(ref), list(ref + d)), "2d_depth")
    half = 2.776 * d.std(ddof=1) / math.sqrt(5)
    assert p["ci"] == pytest.approx((d.mean() - half, d.mean() + half))
    assert p["verdict"] == "worse" and p["wins"] == 0


def test_mixed_signs_are_not_resolved_and_one_seed_has_no_interval():
    p = scores.paired_versus(_by_variant([40, 40, 40], [39, 41, 40.5]), "2d_depth")
    assert p["verdict"] == "not resolved"
    one = scores.paired_versus(_by_variant([40], [38]), "2d_depth")
    assert one["verdict"] == "single seed: no interval" and one["diff"] == -2
    # only seeds present on both sides pair up
    bv = _by_variant([40, 41, 42], [39, 40])
    assert scores.paired_versus(bv, "2d_depth")["n"] == 2


def test_t_quantiles():
    assert scores.t975(2) == pytest.approx(4.303)
    assert scores.t975(30) == pytest.approx(2.042, abs=0.003)
    with pytest.raises(ValueError):
        scores.t975(0)
