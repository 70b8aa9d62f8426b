"""MBG/NBD and Pareto/NBD against lifetimes, the published Pareto/NBD fit, and high-precision oracles."""

from __future__ import annotations

import mpmath
import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, ModifiedBetaGeoFitter, ParetoNBDFitter

from crmvalue.features import compress_rfm
from crmvalue.models import (
    PURCHASE_MODELS,
    ModifiedBetaGeoParams,
    ParetoNBDModel,
    ParetoNBDParams,
)
from crmvalue.models.base import _numerical_log_param_covariance

LIFETIMES = {"bgnbd": BetaGeoFitter, "mbgnbd": ModifiedBetaGeoFitter, "paretonbd": ParetoNBDFitter}


@pytest.fixture(scope="module")
def fitted(sample_summary):
    s = sample_summary
    return {
        name: cls().fit(s["frequency"], s["recency"], s["T"])
        for name, cls in PURCHASE_MODELS.items()
        if cls.data_kind == "continuous"
    }


def test_pareto_nbd_reproduces_the_published_cdnow_fit(fitted):
    """Fader, Hardie & Lee (2005): r, alpha, s, beta = 0.553, 10.578, 0.606, 11.669; LL -9595.0."""
    p = fitted["paretonbd"].params_
    assert (p.r, p.alpha, p.s, p.beta) == pytest.approx((0.553, 10.578, 0.606, 11.669), abs=1e-3)
    assert fitted["paretonbd"].log_likelihood_ == pytest.approx(-9595.0, abs=0.05)


def test_pareto_fit_is_reproducible(sample_summary):
    s = sample_summary
    a = ParetoNBDModel().fit(s["frequency"], s["recency"], s["T"]).params_
    b = ParetoNBDModel().fit(s["frequency"], s["recency"], s["T"]).params_
    assert a == b  # lifetimes alone starts from random values


@pytest.mark.parametrize("name", ["mbgnbd", "paretonbd"])
def test_log_likelihood_equals_lifetimes(fitted, sample_summary, name):
    model = fitted[name]
    rows = compress_rfm(sample_summary["frequency"], sample_summary["recency"], sample_summary["T"])
    values = np.array(list(model.params_.as_dict().values()))
    args = (
        rows["frequency"].to_numpy(),
        rows["recency"].to_numpy(),
        rows["T"].to_numpy(),
        rows["weights"].to_numpy(),
        0.0,
    )
    if name == "paretonbd":  # lifetimes takes raw params and divides by the mean weight
        theirs = -LIFETIMES[name]._negative_log_likelihood(values, *args) * rows["weights"].mean()
    else:
        theirs = -LIFETIMES[name]._negative_log_likelihood(np.log(values), *args) * rows["weights"].sum()
    assert model.log_likelihood_ == pytest.approx(theirs, rel=1e-10)


@pytest.mark.parametrize("name", ["mbgnbd", "paretonbd"])
def test_predictions_equal_lifetimes(fitted, sample_summary, name):
    model = fitted[name]
    twin = LIFETIMES[name]()
    twin.params_ = pd.Series(model.params_.as_dict())
    x, t_x, T = sample_summary["frequency"], sample_summary["recency"], sample_summary["T"]
    np.testing.assert_allclose(
        model.conditional_probability_alive(x, t_x, T), twin.conditional_probability_alive(x, t_x, T), rtol=1e-10
    )
    for t in (1.0, 13.0, 39.0):
        np.testing.assert_allclose(
            model.conditional_expected_number_of_purchases_up_to_time(t, x, t_x, T),
            twin.conditional_expected_number_of_purchases_up_to_time(t, x, t_x, T),
            rtol=1e-10,
        )
    grid = np.array([1.0, 10.0, 39.0, 78.0])
    np.testing.assert_allclose(
        model.expected_number_of_purchases_up_to_time(grid),
        twin.expected_number_of_purchases_up_to_time(grid),
        rtol=1e-10,
    )


def _pareto_mp(p: ParetoNBDParams, t, x, t_x, T):
    """P(alive) and E[Y(t)] from Fader-Hardie note 009, eqs. (19)-(20), (36), (41), in 50-digit arithmetic."""
    mpmath.mp.dps = 50
    r, alpha, s, beta, t, x, t_x, T = (mpmath.mpf(v) for v in (p.r, p.alpha, p.s, p.beta, t, x, t_x, T))
    if alpha >= beta:
        low, high, B = beta, alpha, s + 1
    else:
        low, high, B = alpha, beta, r + x
    A = r + s + x
    a0 = (
        mpmath.hyp2f1(A, B, A + 1, (high - low) / (high + t_x)) / (high + t_x) ** A
        - mpmath.hyp2f1(A, B, A + 1, (high - low) / (high + T)) / (high + T) ** A
    )
    alive = 1 / (1 + s / (r + s + x) * (alpha + T) ** (r + x) * (beta + T) ** s * a0)
    expected = (r + x) * (beta + T) / ((alpha + T) * (s - 1)) * (1 - ((beta + T) / (beta + T + t)) ** (s - 1)) * alive
    return float(alive), float(expected)


def _mbg_mp(p: ModifiedBetaGeoParams, t, x, t_x, T):
    """MBG/NBD E[Y(t) | x, t_x, T] (Wagner and Hoppe 2008), directly, in 60-digit arithmetic."""
    mpmath.mp.dps = 60
    r, alpha, a, b, t, x, t_x, T = (mpmath.mpf(v) for v in (p.r, p.alpha, p.a, p.b, t, x, t_x, T))
    hyp = mpmath.hyp2f1(r + x, b + x + 1, a + b + x, t / (alpha + T + t))
    numerator = (a + b + x) / (a - 1) * (1 - hyp * ((alpha + T) / (alpha + t + T)) ** (r + x))
    return float(numerator / (1 + a / (b + x) * ((alpha + T) / (alpha + t_x)) ** (r + x)))


HEAVY = [(150, 70.0, 78.0), (400, 77.9, 78.0), (800, 40.0, 78.0), (1500, 78.0, 78.0), (2500, 76.0, 78.0)]


@pytest.mark.parametrize("x,t_x,T", HEAVY)
def test_heavy_buyers_match_high_precision(fitted, x, t_x, T):
    pareto = fitted["paretonbd"].params_
    alive, expected = _pareto_mp(pareto, 39.0, x, t_x, T)
    assert float(pareto.p_alive(x, t_x, T)) == pytest.approx(alive, rel=1e-8, abs=1e-300)
    assert float(pareto.expected_purchases(39.0, x, t_x, T)) == pytest.approx(expected, rel=1e-8, abs=1e-300)
    mbg = fitted["mbgnbd"].params_
    assert float(mbg.expected_purchases(39.0, x, t_x, T)) == pytest.approx(
        _mbg_mp(mbg, 39.0, x, t_x, T), rel=1e-8, abs=1e-300
    )


def test_lifetimes_pareto_breaks_where_ours_does_not(fitted):
    """A heavy buyer who bought on the last day: lifetimes' Pareto/NBD gives NaN; A_0 = 0, so P(alive) = 1."""
    p = fitted["paretonbd"].params_
    twin = ParetoNBDFitter()
    twin.params_ = pd.Series(p.as_dict())
    with np.errstate(all="ignore"):
        assert np.isnan(twin.conditional_probability_alive(1500, 78.0, 78.0))
    assert float(p.p_alive(1500, 78.0, 78.0)) == 1.0
    closed_form = (
        (p.r + 1500)
        * (p.beta + 78)
        / ((p.alpha + 78) * (p.s - 1))
        * (1 - ((p.beta + 78) / (p.beta + 78 + 39)) ** (p.s - 1))
    )
    assert float(p.expected_purchases(39.0, 1500, 78.0, 78.0)) == pytest.approx(closed_form, rel=1e-12)


def test_numerical_standard_errors_agree_with_lifetimes_autograd(fitted, sample_summary):
    """The central-difference Hessian used for Pareto/NBD, checked where lifetimes has an exact one (BG/NBD)."""
    bg = fitted["bgnbd"]
    rows = compress_rfm(sample_summary["frequency"], sample_summary["recency"], sample_summary["T"])
    numerical = _numerical_log_param_covariance(bg.params_, rows)
    np.testing.assert_allclose(np.sqrt(np.diag(numerical)), np.sqrt(np.diag(bg.log_param_covariance_)), rtol=1e-3)
    assert (fitted["paretonbd"].standard_errors_ > 0).all()
    ci = fitted["paretonbd"].confidence_intervals_
    assert (ci["lower"] < pd.Series(fitted["paretonbd"].params_.as_dict())).all()
    assert (ci["upper"] > pd.Series(fitted["paretonbd"].params_.as_dict())).all()


def test_information_criteria(fitted):
    for model in fitted.values():
        assert model.aic_ == pytest.approx(8 - 2 * model.log_likelihood_)
        assert model.bic_ == pytest.approx(4 * np.log(2357) - 2 * model.log_likelihood_)
    # the paper: BG/NBD fits the CDNOW sample as well as Pareto/NBD, with a higher likelihood here
    assert fitted["bgnbd"].log_likelihood_ > fitted["paretonbd"].log_likelihood_


def test_mbgnbd_p_alive_is_below_one_for_one_time_buyers(fitted):
    p = fitted["mbgnbd"].params_
    assert 0 < float(p.p_alive(0, 0.0, 30.0)) < 1
    assert float(fitted["bgnbd"].params_.p_alive(0, 0.0, 30.0)) == 1.0


# --- crmvalue's own BG/NBD and MBG/NBD fit against lifetimes' objective and optimum ------------------

FAMILY = [("bgnbd", BetaGeoFitter, False), ("mbgnbd", ModifiedBetaGeoFitter, True)]


def _rows(summary) -> list[np.ndarray]:
    rows = compress_rfm(summary["frequency"], summary["recency"], summary["T"])
    return [rows[c].to_numpy() for c in ("frequency", "recency", "T", "weights")]


@pytest.mark.parametrize("name,lifetimes_class,modified", FAMILY)
@pytest.mark.parametrize("penalizer", [0.0, 0.05])
def test_objective_gradient_and_hessian(sample_summary, name, lifetimes_class, modified, penalizer):
    """Value equals lifetimes' objective on scaled time; gradient and Hessian equal central differences."""
    from scipy.optimize import approx_fprime

    from crmvalue.models.beta_geo_fit import BetaGeoObjective

    x, t_x, T, w = _rows(sample_summary)
    objective = BetaGeoObjective(x, t_x, T, w, penalizer, modified)
    theta = np.log([0.3, 1.5, 0.9, 2.0])  # away from the optimum, so the gradient is not ~0
    value, gradient, hessian = objective.evaluate(theta)
    scale = 1 / T.max()
    theirs = lifetimes_class._negative_log_likelihood(theta, x.astype(int), t_x * scale, T * scale, w, penalizer)
    assert value == pytest.approx(theirs, rel=1e-12)
    np.testing.assert_allclose(gradient, approx_fprime(theta, lambda z: objective(z)[0], 1e-7), atol=1e-6)
    numerical = np.array([approx_fprime(theta, lambda z, i=i: objective(z)[1][i], 1e-6) for i in range(4)])
    np.testing.assert_allclose(hessian, numerical, atol=1e-5)
    assert np.abs(gradient).max() > 0.05


def _simulated_days_summary(n: int, seed: int):
    """Like bench/run.py: BG/NBD customers observed for whole days, in weeks."""
    from crmvalue.models import BetaGeoParams
    from crmvalue.simulate import simulate_bgnbd_summary

    T = np.random.default_rng(seed).integers(182, 547, n) / 7
    s = simulate_bgnbd_summary(BetaGeoParams(0.25, 4.0, 0.8, 2.5), T, seed=seed + 1)
    s["recency"] = np.floor(s["recency"] * 7) / 7
    return s


@pytest.mark.parametrize("name,lifetimes_class,modified", FAMILY)
@pytest.mark.parametrize("penalizer", [0.0, 0.01])
@pytest.mark.parametrize("data", ["cdnow", "simulated"])
def test_estimates_equal_lifetimes_on_raw_rows(sample_summary, name, lifetimes_class, modified, penalizer, data):
    """Our compressed fit lands on lifetimes' optimum (raw rows, autograd, BFGS) to 4 significant digits,
    and its standard errors and log-likelihood are lifetimes'."""
    s = sample_summary if data == "cdnow" else _simulated_days_summary(4000, seed=11)
    ours = PURCHASE_MODELS[name](penalizer=penalizer).fit(s["frequency"], s["recency"], s["T"])
    theirs = lifetimes_class(penalizer_coef=penalizer).fit(s["frequency"], s["recency"], s["T"])
    for param, value in theirs.params_.items():
        assert ours.params_.as_dict()[param] == pytest.approx(value, rel=5e-5), param
    np.testing.assert_allclose(ours.standard_errors_.to_numpy(), theirs.standard_errors_.to_numpy(), rtol=1e-3)
    assert ours.log_likelihood_ == pytest.approx(
        ours.params_.log_likelihood(s["frequency"], s["recency"], s["T"]), rel=1e-10
    )
    assert ours.n_patterns_ < len(s)
