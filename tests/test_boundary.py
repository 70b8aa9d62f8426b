"""Boundary maximum-likelihood estimates: handled by one rule, the same on every CPU, with finite predictions.

The rule (crmvalue.models.objective): a fit is an interior optimum only if it converged, every
parameter lies in [1e-6, 1e6] in scaled units, the Hessian is positive definite, no log-parameter
has a standard error above 4.5 and the predictions are finite. Otherwise it is refitted with each
ridge of a fixed ladder on the log-parameters, and the interior fit with the highest marginal
likelihood is kept. "CPU-independent" is tested the way a different BLAS kernel changes a fit:
by perturbing the inputs, the weights and the start by 1e-12 relative.
"""

from __future__ import annotations

import warnings

import mpmath
import numpy as np
import pandas as pd
import pytest

import crmvalue.models.beta_geo_fit as beta_geo_fit
import crmvalue.models.gamma_gamma as gamma_gamma
import crmvalue.models.objective as shared_fit
import crmvalue.models.paretonbd as paretonbd
from crmvalue.errors import CrmvalueError
from crmvalue.features import calibration_holdout_summary, compress_rfm
from crmvalue.models import (
    PURCHASE_MODELS,
    BetaGeoModel,
    BetaGeoParams,
    GammaGammaModel,
    GammaGammaParams,
    MeanSpendParams,
    ModifiedBetaGeoModel,
    ParetoNBDModel,
    ParetoNBDParams,
    ValueModel,
)
from crmvalue.models.objective import FitAttempt, NewtonObjective, not_interior
from crmvalue.models.uncertainty import bootstrap_intervals
from crmvalue.simulate import simulate_bgnbd_summary

HEAVY = pd.DataFrame(
    {  # heavy buyers (thousands of purchases), one-time buyers and tiny/huge spend
        "frequency": [150.0, 400.0, 800.0, 1500.0, 3000.0, 5000.0, 0.0, 1.0],
        "recency": [70.0, 77.9, 40.0, 78.0, 10.0, 300.0, 0.0, 1.0],
        "T": [78.0, 78.0, 78.0, 78.0, 300.0, 300.0, 5.0, 300.0],
        "monetary_value": [10.0, 20.0, 30.0, 40.0, 50.0, 1e6, 0.0, 1e-3],
    }
)


# --- the data of each boundary case -------------------------------------------------------------------


@pytest.fixture(scope="module")
def no_dropout_in_calibration() -> pd.DataFrame:
    """tests/test_models.py's case: 200 simulated customers whose calibration year shows no dropout."""
    from conftest import simulated_transactions

    return calibration_holdout_summary(simulated_transactions(200, seed=21), "2020-12-31", "2021-12-31", "days")


@pytest.fixture(scope="module")
def churn_cutoff(cdnow_sample) -> pd.DataFrame:
    """The churn features' earliest cut-off on the CDNOW sample: 1,757 customers, 283 repeaters, T <= 8.9 weeks."""
    return calibration_holdout_summary(cdnow_sample, "1997-03-04", "1997-09-30", "weeks")


def _no_dropout_heterogeneity() -> pd.DataFrame:
    """BG/NBD with dropout p ~ Beta(1e6, 1e7): every customer drops out with probability 1/11."""
    T = np.random.default_rng(1).uniform(20, 52, 1000)
    return simulate_bgnbd_summary(BetaGeoParams(0.5, 5.0, 1e6, 1e7), T, seed=2)


def _spend(kind: str, n: int = 300, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Repeat buyers' (frequency, mean spend): every amount from one Gamma ("no heterogeneity"), the same amount
    ("identical"), or customer means so dispersed that the unconstrained q is below 1 ("heavy tail")."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 8, n).astype(float)
    if kind == "identical":
        return x, np.full(n, 25.0)
    nu = np.full(n, 0.2) if kind == "no heterogeneity" else rng.gamma(0.6, 1.0, n)
    p = 3.0 if kind == "no heterogeneity" else 5.0
    return x, np.array([rng.gamma(p, 1 / nu_i, int(k)).mean() for nu_i, k in zip(nu, x)])


def _purchase_case(name: str, request) -> tuple[type, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    if name == "no dropout in calibration":
        s = request.getfixturevalue("no_dropout_in_calibration")
        return BetaGeoModel, (s["frequency_cal"].to_numpy(), s["recency_cal"].to_numpy(), s["T_cal"].to_numpy())
    if name == "churn cut-off":
        s = request.getfixturevalue("churn_cutoff")
        return BetaGeoModel, (s["frequency_cal"].to_numpy(), s["recency_cal"].to_numpy(), s["T_cal"].to_numpy())
    if name == "no dropout heterogeneity":
        s = _no_dropout_heterogeneity()
        return BetaGeoModel, (s["frequency"].to_numpy(), s["recency"].to_numpy(), s["T"].to_numpy())
    model = {"BG/NBD": BetaGeoModel, "MBG/NBD": ModifiedBetaGeoModel, "Pareto/NBD": ParetoNBDModel}[name.split()[-1]]
    T = np.linspace(1.0, 30.0, 20)
    return model, (np.zeros(20), np.zeros(20), T)  # "all one-time buyers <model>"


NO_REPEAT_BUYER = "no customer has a repeat purchase, so the purchase rate goes to 0 and dropout is not identified"
PURCHASE_CASES = {  # case: (expected boundary_, expected penalizer_used_)
    "no dropout in calibration": ("a and b diverge together (no dropout heterogeneity)", 1e-3),
    "churn cut-off": ("a and b go to 0 together", 1e-4),
    "no dropout heterogeneity": ("a and b diverge together (no dropout heterogeneity)", 1e-4),
    "all one-time buyers BG/NBD": (NO_REPEAT_BUYER, 1e-2),
    "all one-time buyers MBG/NBD": (NO_REPEAT_BUYER, 1e-2),
    "all one-time buyers Pareto/NBD": (NO_REPEAT_BUYER, 1e-2),
}


# --- the guard: no non-finite number reaches scipy's linear algebra -------------------------------------


class _Quadratic(NewtonObjective):
    def _evaluate(self, theta):
        if theta[0] > 5:
            return np.nan, np.full(2, np.nan), np.full((2, 2), np.nan)
        return float(theta @ theta), 2 * theta, 2 * np.eye(2)


def test_the_guard_refuses_points_outside_the_box_or_with_non_finite_derivatives():
    objective = _Quadratic()
    assert objective.evaluate(np.array([1.0, 2.0]))[0] == 5.0
    for theta in ([6.0, 0.0], [0.0, 31.0], [np.nan, 0.0], [np.inf, 0.0]):
        value, gradient, hessian = objective.evaluate(np.array(theta))
        assert value == np.inf and (gradient == 0).all() and (hessian == np.eye(2)).all()
    objective.ridge, objective.centre = 0.5, np.array([1.0, 0.0])
    objective._cache = None
    value, gradient, hessian = objective.evaluate(np.array([1.0, 2.0]))
    assert value == 5.0 + 0.5 * 4 and gradient == pytest.approx([2.0, 6.0]) and hessian == pytest.approx(3 * np.eye(2))


def test_trust_exact_walks_to_the_boundary_without_an_exception_or_a_warning(no_dropout_in_calibration):
    """The unpenalised objective runs off to a, b -> infinity: every refused step is rejected cleanly."""
    s = no_dropout_in_calibration
    rows = compress_rfm(s["frequency_cal"], s["recency_cal"], s["T_cal"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = beta_geo_fit.fit_beta_geo(rows["frequency"], rows["recency"], rows["T"], rows["weights"])
    assert np.isfinite(fit.hessian).all() and np.isfinite(fit.log_params).all()


def test_a_converged_fit_with_an_absurd_standard_error_is_a_boundary():
    names = ("r", "alpha", "a", "b")
    covariance = np.diag([0.01, 0.01, 36.0, 36.0])  # log a and log b known to a factor e^6 ~ 400
    attempt = FitAttempt(names, {}, np.zeros(4), True, -1.0, covariance)
    assert "flat in a and b" in not_interior(attempt)
    far = FitAttempt(names, {}, np.array([0.0, 0.0, 14.0, 0.0]), True, -1.0, np.eye(4) * 0.01)  # a = 1.2e6
    assert not_interior(far).startswith("a outside")
    assert "not positive definite" in not_interior(FitAttempt(names, {}, np.zeros(4), True, -1.0, -np.eye(4)))
    assert not_interior(FitAttempt(names, {}, np.zeros(4), True, -1.0, np.eye(4) * 0.01)) is None


# --- purchase models ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(PURCHASE_CASES))
def test_a_boundary_fit_ends_with_a_warning_and_finite_predictions(case, request):
    model_class, (x, t_x, T) = _purchase_case(case, request)
    boundary, ridge = PURCHASE_CASES[case]
    model = model_class().fit(x, t_x, T)
    assert model.boundary_ == boundary
    assert model.penalizer_used_ == ridge
    label = model.params_.label
    assert model.warning_.startswith(f"{label}: boundary estimate ({boundary}); refitted with a ridge of {ridge:g}")
    assert "\n" not in model.warning_
    assert np.isfinite(model.log_param_covariance_).all() and (model.standard_errors_ > 0).all()
    assert np.isfinite(model.conditional_probability_alive(x, t_x, T)).all()
    assert np.isfinite(model.conditional_expected_number_of_purchases_up_to_time(T.max(), x, t_x, T)).all()
    spend = GammaGammaParams(6.0, 4.0, 15.0)
    scores = ValueModel(model.params_, spend, "weeks", 90, 12, 0.01).predict(HEAVY)
    assert np.isfinite(scores.to_numpy()).all() and (scores["clv"] >= 0).all()


def test_the_churn_cutoff_fit_goes_to_a_and_b_to_zero_and_is_recovered(churn_cutoff):
    """The fit that crashed the churn features: a, b -> 0 unpenalised; handled, a and b stay below 1."""
    s = churn_cutoff
    assert len(s) == 1757 and (s["frequency_cal"] > 0).sum() == 283
    assert s["T_cal"].max() == pytest.approx(8.857, abs=1e-3)
    model = BetaGeoModel().fit(s["frequency_cal"], s["recency_cal"], s["T_cal"])
    p = model.params_
    assert (p.r, p.alpha, p.a, p.b) == pytest.approx((0.2671, 3.8927, 0.1721, 0.4541), rel=1e-3)


@pytest.mark.parametrize("case", list(PURCHASE_CASES))
def test_the_outcome_is_the_same_after_perturbing_inputs_weights_and_start_by_1e_12(case, request, monkeypatch):
    model_class, (x, t_x, T) = _purchase_case(case, request)
    reference = model_class().fit(x, t_x, T)
    rng = np.random.default_rng(0)
    wobble = lambda a: a * (1 + 1e-12 * rng.uniform(-1, 1, np.shape(a)))  # noqa: E731
    T2 = wobble(T)
    t_x2 = np.minimum(wobble(t_x), T2)
    weights = wobble(np.ones(len(x)))
    monkeypatch.setattr(beta_geo_fit, "LIFETIMES_START", wobble(beta_geo_fit.LIFETIMES_START))
    monkeypatch.setattr(paretonbd, "LIFETIMES_START", wobble(paretonbd.LIFETIMES_START))
    perturbed = model_class().fit(x, t_x2, T2, weights=weights)
    assert perturbed.boundary_ == reference.boundary_
    assert perturbed.penalizer_used_ == reference.penalizer_used_
    for name, value in reference.params_.as_dict().items():
        assert perturbed.params_.as_dict()[name] == pytest.approx(value, rel=1e-6), name


@pytest.mark.parametrize("case", ["no dropout in calibration", "churn cut-off"])
def test_holdout_error_is_no_worse_than_a_penalizer_chosen_by_hand(case, request):
    """RMSE of the expected holdout purchases: the handled fit against lifetimes-style penalizer 0.001.
    Measured: 1.835 vs 1.818 (+0.9%) without dropout in calibration; 1.933 vs 2.248 at the churn cut-off."""
    s = request.getfixturevalue("no_dropout_in_calibration" if case == "no dropout in calibration" else "churn_cutoff")
    args = s["frequency_cal"], s["recency_cal"], s["T_cal"]
    duration = s["duration_holdout"].iloc[0]

    def rmse(model):
        predicted = model.conditional_expected_number_of_purchases_up_to_time(duration, *args)
        return float(np.sqrt(np.mean((predicted - s["frequency_holdout"]) ** 2)))

    auto = BetaGeoModel().fit(*args)
    assert auto.penalizer_used_ > 0
    assert rmse(auto) <= 1.02 * rmse(BetaGeoModel(penalizer=0.001).fit(*args))


def test_an_interior_fit_is_unchanged(sample_summary):
    """CDNOW: no ridge, no boundary, no warning (the published numbers are pinned in test_models/test_model_family)."""
    s = sample_summary
    for model_class in (m for m in PURCHASE_MODELS.values() if m.data_kind == "continuous"):
        model = model_class().fit(s["frequency"], s["recency"], s["T"])
        assert model.penalizer_used_ == 0.0 and model.boundary_ is None and model.warning_ is None, model.name
    gg = GammaGammaModel().fit(s["frequency"], s["monetary_value"])
    assert gg.penalizer_used_ == 0.0 and gg.boundary_ is None and gg.warning_ is None
    assert (gg.params_.p, gg.params_.q, gg.params_.v) == pytest.approx((6.2488, 3.7446, 15.4477), rel=1e-3)


def test_expected_purchases_are_finite_and_continuous_at_a_equal_1():
    """BG/NBD's (1 - G)/(a - 1) is 0/0 at a = 1, where a ridge fit without dropout information lands."""

    def oracle(a):
        mpmath.mp.dps = 60
        a = mpmath.mpf(a) if a != 1.0 else mpmath.mpf(1) + mpmath.mpf("1e-40")  # the limit at a = 1
        r, alpha, b, t, x, T = (mpmath.mpf(v) for v in (0.3, 5.0, 1.0, 10.0, 2.0, 20.0))
        t_x = mpmath.mpf(15.0)
        z = t / (alpha + T + t)
        hyp = mpmath.hyp2f1(r + x, b + x, a + b + x - 1, z)
        expected = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
        return float(expected / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x)))

    for a in (1.0, 1.0 + 3e-5, 1.0 - 7e-5, 1.0 + 1e-3):
        ours = float(BetaGeoParams(0.3, 5.0, a, 1.0).expected_purchases(10.0, 2.0, 15.0, 20.0))
        assert ours == pytest.approx(oracle(a), rel=1e-7), a


def test_pareto_expected_purchases_are_finite_at_s_equal_1():
    p = ParetoNBDParams(0.5, 10.0, 1.0, 12.0)
    limit = (0.5 + 2) * (12.0 + 30) / (10.0 + 30) * np.log((12.0 + 30 + 20) / (12.0 + 30)) * p.p_alive(2, 25.0, 30.0)
    assert float(p.expected_purchases(20.0, 2, 25.0, 30.0)) == pytest.approx(float(limit), rel=1e-12)
    assert float(p.expected_purchases_unconditional(20.0)) == pytest.approx(0.5 * 12 / 10 * np.log(32 / 12), rel=1e-12)


def test_no_fit_raises_anything_but_a_one_line_error(monkeypatch):
    """An optimiser that raises (here scipy's own error on a non-finite Hessian) is a fit that did not converge."""

    def broken(*args, **kwargs):
        raise ValueError("array must not contain infs or NaNs")

    monkeypatch.setattr(beta_geo_fit, "minimize", broken)
    monkeypatch.setattr(shared_fit, "minimize", broken)  # Gamma-Gamma fits through objective.solve
    with pytest.raises(CrmvalueError, match="did not converge") as failure:
        BetaGeoModel().fit([1, 2, 0], [1.0, 3.0, 0.0], [5.0, 6.0, 7.0])
    assert "\n" not in str(failure.value)
    x, m = _spend("no heterogeneity")
    with pytest.raises(CrmvalueError, match="did not converge"):
        GammaGammaModel().fit(x, m)


# --- Gamma-Gamma -----------------------------------------------------------------------------------

GG_CASES = {  # case: (start of boundary_, penalizer_used_)
    "no heterogeneity": ("q and v diverge together (no spend heterogeneity)", 1e-4),
    "identical": ("p -> infinity; q -> infinity", 1e-2),
    "heavy tail": ("the unconstrained optimum runs to q < 2", 0.0),
}


@pytest.mark.parametrize("case", list(GG_CASES))
def test_gamma_gamma_boundary_ends_with_a_warning_and_finite_spend(case):
    x, m = _spend(case)
    gg = GammaGammaModel().fit(x, m)
    boundary, ridge = GG_CASES[case]
    assert gg.boundary_.startswith(boundary) and gg.penalizer_used_ == ridge
    assert gg.warning_.startswith("Gamma-Gamma: boundary estimate (") and "\n" not in gg.warning_
    spend = gg.conditional_expected_average_profit(HEAVY["frequency"], HEAVY["monetary_value"])
    assert np.isfinite(spend).all() and (spend > 0).all()
    assert np.isfinite(gg.log_param_covariance_).all()
    if case == "identical":  # every customer spends 25, so that is everyone's expected spend
        np.testing.assert_allclose(gg.conditional_expected_average_profit(x, m), 25.0, rtol=1e-3)
    if case == "no heterogeneity":  # everyone is expected near the mean spend
        assert gg.params_.population_mean == pytest.approx(float(x @ m / x.sum()), rel=0.05)


def test_gamma_gamma_holds_q_at_its_floor_when_the_optimum_is_below_it():
    x, m = _spend("heavy tail")
    gg = GammaGammaModel().fit(x, m)
    assert gg.params_.q == 2.0 and gg.standard_errors_["q"] == 0.0
    assert (gg.log_param_covariance_[1] == 0).all() and (gg.log_param_covariance_[:, 1] == 0).all()
    assert gg.confidence_intervals_.loc["q", "lower"] == gg.confidence_intervals_.loc["q", "upper"] == 2.0
    assert "q is held at 2" in gg.boundary_ and gg.warning_.endswith("q held at 2")
    # the constrained maximum: the likelihood is lower at any larger q, with p and v refitted
    objective = gamma_gamma.GammaGammaObjective(x, m, np.ones_like(x))
    at_floor = objective.evaluate(np.log([gg.params_.p, 2.0, gg.params_.v]))[0]
    assert all(at_floor < objective.evaluate(np.log([gg.params_.p, q, gg.params_.v * (q - 1)]))[0] for q in (2.5, 4.0))
    # the bootstrap draws q = 2 every time and stays finite
    purchase = BetaGeoParams(0.24, 4.4, 0.79, 2.4)
    model = ValueModel(purchase, gg.params_, "weeks", 90, 12, 0.01)
    covariance = np.diag([0.01, 0.01, 0.05, 0.08])
    intervals = bootstrap_intervals(model, HEAVY, covariance, gg.log_param_covariance_, draws=50)
    assert np.isfinite(intervals.to_numpy()).all()


@pytest.mark.parametrize("case", list(GG_CASES))
def test_gamma_gamma_outcome_is_the_same_after_perturbing_by_1e_12(case, monkeypatch):
    x, m = _spend(case)
    reference = GammaGammaModel().fit(x, m)
    rng = np.random.default_rng(1)
    wobble = lambda a: a * (1 + 1e-12 * rng.uniform(-1, 1, np.shape(a)))  # noqa: E731
    monkeypatch.setattr(gamma_gamma, "START_OFFSET", wobble(gamma_gamma.START_OFFSET))
    perturbed = GammaGammaModel().fit(x, wobble(m), weights=wobble(np.ones(len(x))))
    assert (perturbed.boundary_, perturbed.penalizer_used_) == (reference.boundary_, reference.penalizer_used_)
    for name, value in reference.params_.as_dict().items():
        assert perturbed.params_.as_dict()[name] == pytest.approx(value, rel=1e-6), name


def test_too_few_repeat_buyers_give_everyone_the_mean_spend():
    x = np.array([0, 0, 3, 1, 2, 0, 4, 1.0])
    m = np.array([0, 0, 20.0, 50.0, 10.0, 0, 30.0, 40.0])
    gg = GammaGammaModel().fit(x, m)
    mean = float(x @ m / x.sum())  # the mean of the repeat purchases
    assert gg.params_ == MeanSpendParams(pytest.approx(mean, rel=1e-12))
    assert gg.boundary_ == "5 repeat buyers with positive spend, fewer than 10" and gg.penalizer_used_ == 0.0
    assert "every customer's expected spend is the mean of their repeat purchases" in gg.warning_
    np.testing.assert_allclose(gg.conditional_expected_average_profit(x, m), mean, rtol=1e-12)
    # ValueModel scores with it, saves it as JSON and loads it back; the bootstrap works on it
    model = ValueModel(BetaGeoParams(0.24, 4.4, 0.79, 2.4), gg.params_, "weeks", 90, 12, 0.01)
    again = ValueModel.from_dict(model.to_dict())
    assert again == model and model.to_dict()["gamma_gamma"] == {"mean_spend": gg.params_.mean_spend}
    scores = again.predict(HEAVY)
    assert np.isfinite(scores.to_numpy()).all()
    np.testing.assert_allclose(scores["expected_avg_value"], mean, rtol=1e-12)
    intervals = bootstrap_intervals(model, HEAVY, np.diag([0.01, 0.01, 0.05, 0.08]), gg.log_param_covariance_, draws=20)
    assert np.isfinite(intervals.to_numpy()).all()


def test_no_repeat_buyer_needs_the_mean_spend_to_fall_back_on():
    with pytest.raises(CrmvalueError, match="no repeat buyer with a positive spend"):
        GammaGammaModel().fit(np.zeros(30), np.zeros(30))
    gg = GammaGammaModel().fit(np.zeros(30), np.zeros(30), mean_spend=12.5)
    assert gg.params_ == MeanSpendParams(12.5) and gg.standard_errors_["mean_spend"] == 0.0
    # all one-time buyers end to end: a boundary purchase fit and the fallback spend give finite CLV
    T = np.linspace(1.0, 30.0, 30)
    bg = BetaGeoModel().fit(np.zeros(30), np.zeros(30), T)
    summary = pd.DataFrame({"frequency": 0.0, "recency": 0.0, "T": T, "monetary_value": 0.0})
    scores = ValueModel(bg.params_, gg.params_, "weeks", 90, 12, 0.01).predict(summary)
    assert np.isfinite(scores.to_numpy()).all() and (scores["expected_avg_value"] == 12.5).all()


def test_value_models_saved_with_gamma_gamma_parameters_load_as_before():
    saved = {
        "purchase_model": "bgnbd",
        "purchase_params": {"r": 0.24, "alpha": 4.4, "a": 0.79, "b": 2.4},
        "gamma_gamma": {"p": 6.25, "q": 3.74, "v": 15.44},
        "time_unit": "weeks",
        "horizon_days": 90,
        "clv_months": 12,
        "discount_rate": 0.01,
    }
    model = ValueModel.from_dict(saved)
    assert model.gamma_gamma == GammaGammaParams(6.25, 3.74, 15.44) and model.to_dict() == saved
