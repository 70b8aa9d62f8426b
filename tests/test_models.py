"""BG/NBD, Gamma-Gamma and CLV pinned to the published CDNOW numbers and to independent oracles.

Reference: Fader, Hardie & Lee (2005), "Counting your customers the easy way" (BG/NBD) and
"RFM and CLV" (Gamma-Gamma); Hardie's spreadsheet for customer 1. Data: the CDNOW 1/10
sample bundled with lifetimes, summarised here from the raw transactions, in weeks.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, GammaGammaFitter

from crmvalue.errors import CrmvalueError
from crmvalue.models import BetaGeoModel, BetaGeoParams, GammaGammaModel, ValueModel
from crmvalue.models.bgnbd import expected_purchases, p_alive
from crmvalue.simulate import simulate_bgnbd_summary


@pytest.fixture(scope="module")
def fitted(sample_summary):
    s = sample_summary
    bg = BetaGeoModel().fit(s["frequency"], s["recency"], s["T"])
    gg = GammaGammaModel().fit(s["frequency"], s["monetary_value"])
    return bg, gg


def _lifetimes_twins(bg: BetaGeoModel, gg: GammaGammaModel):
    lbg = BetaGeoFitter()
    lbg.params_ = pd.Series(bg.params_.as_dict())
    lbg.predict = lbg.conditional_expected_number_of_purchases_up_to_time
    lgg = GammaGammaFitter()
    lgg.params_ = pd.Series(gg.params_.as_dict())
    return lbg, lgg


def test_bgnbd_reproduces_published_cdnow_parameters(fitted):
    bg, _ = fitted
    p = bg.params_
    assert p.r == pytest.approx(0.2426, abs=5e-5)
    assert p.alpha == pytest.approx(4.4136, abs=5e-5)
    assert p.a == pytest.approx(0.7929, abs=5e-5)
    assert p.b == pytest.approx(2.4259, abs=5e-5)
    assert bg.log_likelihood_ == pytest.approx(-9582.43, abs=0.005)
    assert bg.n_customers_ == 2357 and bg.n_patterns_ < 2357  # fitted on compressed rows


def test_customer_1_expected_purchases_in_39_weeks(fitted):
    bg, _ = fitted
    assert bg.conditional_expected_number_of_purchases_up_to_time(39, 2, 30.43, 38.86) == pytest.approx(1.226, abs=5e-4)


def test_gamma_gamma_reproduces_published_parameters(fitted):
    _, gg = fitted
    assert gg.n_customers_ == 946
    p = gg.params_
    assert p.p == pytest.approx(6.2488, rel=1e-3)
    assert p.q == pytest.approx(3.7446, rel=1e-3)
    assert p.v == pytest.approx(15.4477, rel=1e-3)
    assert gg.frequency_spend_correlation_ == pytest.approx(0.11, abs=0.005)


@pytest.mark.parametrize("penalizer", [0.0, 0.001])  # 0.01 drives q below 1 on the sample
def test_gamma_gamma_fit_equals_lifetimes(sample_summary, cdnow_master_summary, penalizer):
    """Our analytic-Hessian fit against lifetimes' GammaGammaFitter (autograd) on the CDNOW sample and master:
    the same estimates, standard errors and log-parameter covariance."""
    for s in (sample_summary, cdnow_master_summary):
        repeat = s[(s["frequency"] > 0) & (s["monetary_value"] > 0)]
        reference = GammaGammaFitter(penalizer_coef=penalizer).fit(repeat["frequency"], repeat["monetary_value"])
        ours = GammaGammaModel(penalizer).fit(s["frequency"], s["monetary_value"])
        for name, value in reference.params_.items():
            assert ours.params_.as_dict()[name] == pytest.approx(value, rel=1e-6), name
            assert ours.standard_errors_[name] == pytest.approx(reference.standard_errors_[name], rel=1e-4), name
        np.testing.assert_allclose(
            ours.log_param_covariance_, np.linalg.inv(reference._hessian_) / len(repeat), rtol=1e-4
        )


def test_compressed_fit_equals_lifetimes_fit_on_raw_rows(sample_summary, fitted):
    s = sample_summary
    raw = BetaGeoFitter().fit(s["frequency"], s["recency"], s["T"])
    ours = fitted[0].params_.as_dict()
    for name, value in raw.params_.items():
        assert ours[name] == pytest.approx(value, rel=1e-4)


def test_predictions_equal_lifetimes(sample_summary, fitted):
    bg, gg = fitted
    lbg, lgg = _lifetimes_twins(bg, gg)
    x, t_x, T = sample_summary["frequency"], sample_summary["recency"], sample_summary["T"]
    np.testing.assert_allclose(
        bg.conditional_probability_alive(x, t_x, T), lbg.conditional_probability_alive(x, t_x, T), rtol=1e-12
    )
    for t in (1.0, 90 / 7, 39.0, 104.0):
        np.testing.assert_allclose(
            bg.conditional_expected_number_of_purchases_up_to_time(t, x, t_x, T),
            lbg.conditional_expected_number_of_purchases_up_to_time(t, x, t_x, T),
            rtol=1e-9,
        )
    np.testing.assert_allclose(
        gg.conditional_expected_average_profit(x, sample_summary["monetary_value"]),
        lgg.conditional_expected_average_profit(x, sample_summary["monetary_value"]),
        rtol=1e-12,
    )


@pytest.mark.parametrize("time_unit,freq", [("weeks", "W"), ("days", "D")])
def test_clv_equals_lifetimes_customer_lifetime_value(sample_summary, fitted, time_unit, freq):
    bg, gg = fitted
    s = sample_summary
    if time_unit == "days":  # refit in days so the parameters match the unit
        s = s.assign(recency=s["recency"] * 7, T=s["T"] * 7)
        bg = BetaGeoModel().fit(s["frequency"], s["recency"], s["T"])
    lbg, lgg = _lifetimes_twins(bg, gg)
    model = ValueModel(bg.params_, gg.params_, time_unit, horizon_days=90, clv_months=12, discount_rate=0.01)
    ours = model.predict(s)["clv"]
    theirs = lgg.customer_lifetime_value(
        lbg, s["frequency"], s["recency"], s["T"], s["monetary_value"], time=12, discount_rate=0.01, freq=freq
    )
    np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), rtol=1e-9)


def _expected_purchases_mp(params: BetaGeoParams, t, x, t_x, T) -> float:
    """FHL (2005) eq. (10) evaluated directly in 60-digit arithmetic: an independent oracle."""
    mpmath.mp.dps = 60
    r, alpha, a, b = (mpmath.mpf(v) for v in (params.r, params.alpha, params.a, params.b))
    t, x, t_x, T = (mpmath.mpf(v) for v in (t, x, t_x, T))
    z = t / (alpha + T + t)
    hyp = mpmath.hyp2f1(r + x, b + x, a + b + x - 1, z)
    numerator = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
    denominator = 1 + (1 if x > 0 else 0) * a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x)
    return float(numerator / denominator)


HEAVY_BUYERS = [  # x, t_x, T: hundreds of purchases, recent and long gone
    (150, 70.0, 78.0),
    (400, 77.9, 78.0),
    (800, 40.0, 78.0),
    (1500, 78.0, 78.0),
    (3000, 10.0, 300.0),
]


@pytest.mark.parametrize("x,t_x,T", HEAVY_BUYERS)
def test_heavy_buyers_are_finite_and_match_high_precision(fitted, x, t_x, T):
    bg, _ = fitted
    ours = float(expected_purchases(bg.params_, 39.0, x, t_x, T))
    assert np.isfinite(ours)
    assert ours == pytest.approx(_expected_purchases_mp(bg.params_, 39.0, x, t_x, T), rel=1e-8, abs=1e-300)
    assert 0.0 <= float(p_alive(bg.params_, x, t_x, T)) <= 1.0


def test_value_model_is_finite_for_heavy_buyers(fitted):
    bg, gg = fitted
    model = ValueModel(bg.params_, gg.params_, "weeks", 90, 12, 0.01)
    frame = pd.DataFrame(
        {
            "frequency": [x for x, _, _ in HEAVY_BUYERS],
            "recency": [r for _, r, _ in HEAVY_BUYERS],
            "T": [T for _, _, T in HEAVY_BUYERS],
            "monetary_value": 25.0,
        }
    )
    scores = model.predict(frame)
    assert np.isfinite(scores.to_numpy()).all()
    assert (scores["clv"] >= 0).all() and scores["clv"].iloc[3] > 0  # long-gone buyers may round to 0


def test_one_time_buyers_get_population_mean_spend(fitted):
    _, gg = fitted
    spend = gg.conditional_expected_average_profit(np.array([0.0, 0.0]), np.array([0.0, 123.0]))
    np.testing.assert_allclose(spend, gg.params_.population_mean)
    assert gg.params_.population_mean == pytest.approx(gg.params_.p * gg.params_.v / (gg.params_.q - 1))


def test_convergence_failure_names_the_penalizer(sample_summary, monkeypatch):
    """An optimiser that never converges, not even with the fallback ridges: one line naming the penalizer."""
    import lifetimes.fitters as fitters
    from scipy.optimize import OptimizeResult

    import crmvalue.models.beta_geo_fit as beta_geo_fit
    import crmvalue.models.objective as objective

    class Failed:
        success = False

    def stopped(fun, x0, *args, **kwargs):  # stops where it starts, far from the optimum
        return OptimizeResult(x=np.asarray(x0, float), success=False, message="stopped", nfev=0)

    monkeypatch.setattr(fitters, "minimize", lambda *args, **kwargs: Failed())
    for module in (beta_geo_fit, objective):  # BG/NBD's optimiser, and the one Gamma-Gamma shares (objective.solve)
        monkeypatch.setattr(module, "minimize", stopped)
        monkeypatch.setattr(module, "newton_polish", lambda objective, theta: np.asarray(theta, float))
    s = sample_summary
    with pytest.raises(CrmvalueError, match="did not converge.*penalizer") as failure:
        BetaGeoModel().fit(s["frequency"], s["recency"], s["T"])
    assert "\n" not in str(failure.value)
    with pytest.raises(CrmvalueError, match="penalizer"):
        GammaGammaModel().fit(s["frequency"], s["monetary_value"])


def test_no_repeat_buyers_is_a_boundary_fit_and_no_customers_a_clear_error():
    """Valid data without a repeat purchase completes as a boundary fit (r -> 0), with a warning and finite
    predictions; no customer at all is still an error."""
    bg = BetaGeoModel().fit([0, 0, 0], [0, 0, 0], [5.0, 6.0, 7.0])
    assert bg.penalizer_used_ > 0 and "no customer has a repeat purchase" in bg.boundary_
    assert "\n" not in bg.warning_ and str(bg.penalizer_used_) in bg.warning_
    predictions = bg.conditional_expected_number_of_purchases_up_to_time(10.0, [0, 0, 0], [0, 0, 0], [5.0, 6.0, 7.0])
    assert np.isfinite(predictions).all()
    with pytest.raises(CrmvalueError, match="no customers"):
        BetaGeoModel().fit([], [], [])


def test_bgnbd_recovers_parameters_from_simulated_data():
    """Fit data drawn from BG/NBD with known parameters (crmvalue.simulate, an exact sampler)."""
    truth = BetaGeoParams(r=0.25, alpha=4.0, a=0.8, b=2.5)
    T = np.random.default_rng(7).uniform(26, 78, size=20_000)
    sim = simulate_bgnbd_summary(truth, T, seed=0)
    bg = BetaGeoModel().fit(sim["frequency"], sim["recency"], sim["T"])
    for name, value in truth.as_dict().items():
        estimate, se = bg.params_.as_dict()[name], bg.standard_errors_[name]
        assert abs(estimate - value) < 3 * se, (name, estimate, value, se)
        assert abs(estimate - value) < 0.1 * value, (name, estimate, value)


def test_a_boundary_fit_is_handled_with_a_warning_and_the_named_remedy_works():
    """200 simulated customers whose calibration data show no dropout: the MLE of (a, b) runs off to infinity.
    The fit no longer fails: it is a boundary fit, refitted with the smallest ridge that gives an interior optimum,
    with one warning line and finite predictions; the penalizer a user would name still works as before."""
    from conftest import simulated_transactions

    from crmvalue.features import calibration_holdout_summary

    s = calibration_holdout_summary(simulated_transactions(200, seed=21), "2020-12-31", "2021-12-31", "days")
    handled = BetaGeoModel().fit(s["frequency_cal"], s["recency_cal"], s["T_cal"])
    assert handled.boundary_ == "a and b diverge together (no dropout heterogeneity)"
    assert handled.penalizer_used_ == 1e-3
    assert handled.warning_.startswith("BG/NBD: boundary estimate") and "\n" not in handled.warning_
    assert handled.params_.r == pytest.approx(0.25, rel=0.2)  # the simulation's truth
    calibration = s["frequency_cal"], s["recency_cal"], s["T_cal"]
    assert np.isfinite(handled.conditional_expected_number_of_purchases_up_to_time(365, *calibration)).all()
    penalized = BetaGeoModel(penalizer=0.001).fit(s["frequency_cal"], s["recency_cal"], s["T_cal"])
    assert penalized.penalizer_used_ == 0.0 and penalized.boundary_ is None
    assert penalized.params_.r == pytest.approx(0.25, rel=0.2)


def test_gamma_gamma_intervals_agree_with_lifetimes_standard_errors(sample_summary):
    """The delta method from crmvalue's log-parameter covariance gives lifetimes' standard errors;
    the 95% interval is exp(log θ ± 1.96 se/θ), so it brackets θ and is wider above it."""
    s = sample_summary
    gg = GammaGammaModel().fit(s["frequency"], s["monetary_value"])
    values = np.array(list(gg.params_.as_dict().values()))
    log_se = np.sqrt(np.diag(gg.log_param_covariance_))
    np.testing.assert_allclose(values * log_se, gg.standard_errors_.to_numpy(), rtol=1e-6)
    ci = gg.confidence_intervals_
    assert (ci["lower"].to_numpy() < values).all() and (values < ci["upper"].to_numpy()).all()
    assert ((ci["upper"].to_numpy() - values) > (values - ci["lower"].to_numpy())).all()


def test_weighted_fits_equal_fits_on_expanded_rows(sample_summary):
    """A row that stands for w customers counts as w rows: weights give the fit on the expanded data."""
    s = sample_summary
    counts = s.groupby(["frequency", "recency", "T"]).size().rename("weights").reset_index()
    expanded = BetaGeoModel().fit(s["frequency"], s["recency"], s["T"])
    weighted = BetaGeoModel().fit(counts["frequency"], counts["recency"], counts["T"], weights=counts["weights"])
    np.testing.assert_allclose(
        list(weighted.params_.as_dict().values()), list(expanded.params_.as_dict().values()), rtol=1e-9
    )
    assert weighted.n_customers_ == len(s)
    spend = s.groupby(["frequency", "monetary_value"]).size().rename("weights").reset_index()
    gg = GammaGammaModel().fit(s["frequency"], s["monetary_value"])
    gg_weighted = GammaGammaModel().fit(spend["frequency"], spend["monetary_value"], weights=spend["weights"])
    np.testing.assert_allclose(
        list(gg_weighted.params_.as_dict().values()), list(gg.params_.as_dict().values()), rtol=1e-9
    )
    assert gg_weighted.n_customers_ == gg.n_customers_ == 946
    assert gg_weighted.frequency_spend_correlation_ == pytest.approx(gg.frequency_spend_correlation_, rel=1e-12)
    with pytest.raises(CrmvalueError, match="weights"):
        BetaGeoModel().fit(s["frequency"], s["recency"], s["T"], weights=-np.ones(len(s)))
