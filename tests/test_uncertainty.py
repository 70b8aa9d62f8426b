"""The parametric bootstrap: the draws, the draw-vectorised scoring, and the intervals in the export."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from crmvalue.features import rfm_summary
from crmvalue.models import PURCHASE_MODELS, GammaGammaModel, ValueModel
from crmvalue.models.uncertainty import bootstrap_intervals, draw_parameters
from crmvalue.models.value import discounted_purchases


@pytest.fixture(scope="module")
def sample(cdnow_sample):
    s = rfm_summary(cdnow_sample, "1997-09-30", "weeks")
    gg = GammaGammaModel().fit(s["frequency"], s["monetary_value"])
    return s, gg


def test_draws_follow_the_asymptotic_normal_of_the_log_parameters(sample):
    s, _ = sample
    bg = PURCHASE_MODELS["bgnbd"]().fit(s["frequency"], s["recency"], s["T"])
    draws = draw_parameters(bg.params_, bg.log_param_covariance_, 20_000, np.random.default_rng(1))
    logs = np.log(np.hstack([draws.r, draws.alpha, draws.a, draws.b]))
    np.testing.assert_allclose(logs.mean(axis=0), np.log(list(bg.params_.as_dict().values())), atol=0.01)
    # whitened by the target covariance, the draws must have identity covariance (4 / sqrt(n) ~ 0.03)
    chol = np.linalg.cholesky(bg.log_param_covariance_)
    white = np.linalg.solve(chol, (logs - np.log(list(bg.params_.as_dict().values()))).T)
    np.testing.assert_allclose(np.cov(white), np.eye(4), atol=0.03)
    assert (np.hstack([draws.r, draws.alpha, draws.a, draws.b]) > 0).all()


@pytest.mark.parametrize("name", ["bgnbd", "mbgnbd", "paretonbd"])
def test_scoring_vectorised_over_draws_equals_scoring_each_draw(sample, name):
    s, _ = sample
    model = PURCHASE_MODELS[name]().fit(s["frequency"], s["recency"], s["T"])
    draws = draw_parameters(model.params_, model.log_param_covariance_, 4, np.random.default_rng(2))
    x, t_x, T = (s[c].to_numpy()[:300] for c in ("frequency", "recency", "T"))
    together = discounted_purchases(draws, x, t_x, T, 12, 0.01, "weeks")
    assert together.shape == (4, 300)
    for k in range(4):
        one = replace(model.params_, **{n: float(v[k, 0]) for n, v in draws.as_dict().items()})
        np.testing.assert_allclose(together[k], discounted_purchases(one, x, t_x, T, 12, 0.01, "weeks"), rtol=1e-12)
        np.testing.assert_allclose(
            draws.expected_purchases(13.0, x, t_x, T)[k], one.expected_purchases(13.0, x, t_x, T), rtol=1e-12
        )


def test_intervals_bracket_the_estimate_and_collapse_without_uncertainty(sample):
    s, gg = sample
    bg = PURCHASE_MODELS["bgnbd"]().fit(s["frequency"], s["recency"], s["T"])
    model = ValueModel(bg.params_, gg.params_, "weeks", 90, 12, 0.01)
    point = model.predict(s)
    iv = bootstrap_intervals(model, s, bg.log_param_covariance_, gg.log_param_covariance_, draws=100, seed=3)
    assert (
        (iv["expected_purchases_lower"] <= point["expected_purchases"])
        & (point["expected_purchases"] <= iv["expected_purchases_upper"])
    ).mean() > 0.99
    assert ((iv["clv_lower"] <= point["clv"]) & (point["clv"] <= iv["clv_upper"])).mean() > 0.99
    assert (iv["clv_upper"] > iv["clv_lower"]).all()
    same = bootstrap_intervals(model, s, bg.log_param_covariance_, gg.log_param_covariance_, draws=100, seed=3)
    pd.testing.assert_frame_equal(iv, same)  # seeded
    none = bootstrap_intervals(model, s, np.zeros((4, 4)), np.zeros((3, 3)), draws=20)
    np.testing.assert_allclose(none["expected_purchases_lower"], point["expected_purchases"], rtol=1e-12)
    np.testing.assert_allclose(none["clv_upper"], point["clv"], rtol=1e-12)


def test_fewer_customers_give_wider_intervals(sample):
    """Parameter uncertainty shrinks with the data: a tenth of the customers, wider intervals."""
    s, _ = sample
    widths = []
    for frame in (s, s.iloc[::10]):
        bg = PURCHASE_MODELS["bgnbd"]().fit(frame["frequency"], frame["recency"], frame["T"])
        gg = GammaGammaModel().fit(frame["frequency"], frame["monetary_value"])
        model = ValueModel(bg.params_, gg.params_, "weeks", 90, 12, 0.01)
        probe = s.iloc[:200]
        iv = bootstrap_intervals(model, probe, bg.log_param_covariance_, gg.log_param_covariance_, draws=100)
        widths.append(float((iv["expected_purchases_upper"] - iv["expected_purchases_lower"]).median()))
    assert widths[1] > 2 * widths[0]
