"""The contract every registered purchase model keeps: fit on data simulated from the model itself,
recover the parameters, predict in range, simulate, and go through the diagnostics.

Parametrised over :func:`crmvalue.models.registry.names`, so a new model is checked by registering it. A
discrete-time model (``data_kind = "discrete"``, BG/BB) is checked on whole numbers of periods; the transaction-log
check below is for the continuous models (BG/BB's is in ``tests/test_bgbb_pipeline.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmvalue import diagnostics as diag
from crmvalue.errors import CrmvalueError
from crmvalue.models import registry
from crmvalue.models.base import PurchaseModel, PurchaseParams
from crmvalue.simulate import simulate_transactions

# known parameters per model, in weeks, near the published CDNOW fits (FHL 2005a) but with dropout
# strong enough to be identified from a few thousand customers
TRUE = {
    "bgnbd": {"r": 0.5, "alpha": 5.0, "a": 0.8, "b": 2.5},
    "mbgnbd": {"r": 0.5, "alpha": 5.0, "a": 0.8, "b": 2.5},
    "paretonbd": {"r": 0.6, "alpha": 8.0, "s": 0.8, "beta": 10.0},
    # per opportunity, near the published donations fit (Fader, Hardie and Shang 2010)
    "bgbb": {"alpha": 1.2, "beta": 0.75, "gamma": 0.66, "delta": 2.8},
}
CUSTOMERS = 4000
WEEKS = 78.0


def test_every_registered_model_has_known_parameters_here():
    assert set(registry.names()) == set(TRUE), "add the new model's true parameters to TRUE"


def test_registry_names_labels_and_errors():
    assert registry.names() == ("bgnbd", "mbgnbd", "paretonbd", "bgbb")
    assert registry.names("continuous") == ("bgnbd", "mbgnbd", "paretonbd")
    assert registry.names("discrete") == ("bgbb",)
    assert [registry.label(n) for n in registry.names()] == ["BG/NBD", "MBG/NBD", "Pareto/NBD", "BG/BB"]
    for name, cls in registry.MODELS.items():
        assert registry.model_class(name) is cls
        assert cls.name == cls.params_class.name == name
        assert cls.label == cls.params_class.label
        assert registry.data_kind(name) == cls.data_kind
    with pytest.raises(
        CrmvalueError, match="unknown purchase model 'nope'; choose one of bgnbd, mbgnbd, paretonbd, bgbb"
    ):
        registry.model_class("nope")
    with pytest.raises(CrmvalueError, match="unknown data kind 'daily'; choose one of continuous, discrete"):
        registry.names("daily")


@pytest.fixture(scope="module", params=registry.names())
def case(request):
    name = request.param
    cls = registry.model_class(name)
    truth = cls.params_class(**TRUE[name])
    T = np.random.default_rng(0).uniform(WEEKS / 2, WEEKS, CUSTOMERS)
    if cls.data_kind == "discrete":  # whole periods of opportunities
        T = np.round(T)
    summary = truth.simulate_summary(T, seed=1)
    model = cls().fit(summary["frequency"], summary["recency"], summary["T"])
    return name, cls, truth, summary, model


def test_declares_what_it_is(case):
    name, cls, truth, summary, model = case
    assert issubclass(cls, PurchaseModel) and isinstance(truth, PurchaseParams)
    assert cls.data_kind in registry.DATA_KINDS
    assert set(cls.data_columns) <= set(summary.columns)
    assert isinstance(cls.family, str) and cls.family
    assert model.name == name and model.label == registry.label(name)


def test_simulated_summary_is_a_valid_history(case):
    _, _, truth, summary, _ = case
    assert list(summary.columns) == ["frequency", "recency", "T"]
    assert len(summary) == CUSTOMERS
    x, t_x, T = (summary[c].to_numpy() for c in ("frequency", "recency", "T"))
    assert np.all(x >= 0) and np.all(x == np.round(x))
    assert np.all((t_x >= 0) & (t_x <= T))
    assert np.all(t_x[x == 0] == 0) and np.all(t_x[x > 0] > 0)
    if case[1].data_kind == "discrete":  # whole opportunities, x of them up to the last one
        assert np.all(t_x == np.round(t_x)) and np.all(x <= t_x)
    # the same seed draws the same customers
    pd.testing.assert_frame_equal(summary, truth.simulate_summary(summary["T"].to_numpy(), seed=1))


def test_fit_recovers_the_parameters(case):
    _, _, truth, _, model = case
    assert model.boundary_ is None
    fitted = model.params_.as_dict()
    for k, true in truth.as_dict().items():
        lower, upper = model.confidence_intervals_.loc[k, ["lower", "upper"]]
        # within 4 standard errors (on the log scale) and within 50%: a wrong model misses both
        log_se = np.log(upper / lower) / (2 * 1.96)
        assert abs(np.log(fitted[k] / true)) < max(4 * log_se, 0.05), (k, fitted[k], true, log_se)
        assert abs(fitted[k] / true - 1) < 0.5, (k, fitted[k], true)
    assert np.isfinite(model.log_likelihood_) and np.isfinite(model.aic_) and np.isfinite(model.bic_)
    # the fit is at least as likely as the truth
    x, t_x, T = (model_summary := case[3])["frequency"], model_summary["recency"], model_summary["T"]
    assert model.params_.log_likelihood(x, t_x, T) >= truth.log_likelihood(x, t_x, T) - 1e-6


def test_predictions_are_finite_and_in_range(case):
    _, _, _, summary, model = case
    params = model.params_
    x, t_x, T = (summary[c].to_numpy() for c in ("frequency", "recency", "T"))
    alive = model.conditional_probability_alive(x, t_x, T)
    assert np.all(np.isfinite(alive)) and np.all((alive >= 0) & (alive <= 1))
    expected = model.conditional_expected_number_of_purchases_up_to_time(10.0, x, t_x, T)
    assert np.all(np.isfinite(expected)) and np.all(expected >= 0)
    longer = model.conditional_expected_number_of_purchases_up_to_time(20.0, x, t_x, T)
    assert np.all(longer >= expected)
    none = model.conditional_probability_of_no_purchase(10.0, x, t_x, T)
    assert np.all(np.isfinite(none)) and np.all((none >= 0) & (none <= 1 + 1e-12))
    # a customer who is not alive buys nothing, so P(no purchase) is at least 1 - P(alive)
    assert np.all(none >= 1 - alive - 1e-12)
    # and it is the ratio of the likelihoods of (x, t_x, T + t) and (x, t_x, T)
    ratio = np.exp(params.per_customer_log_likelihood(x, t_x, T + 10.0) - params.per_customer_log_likelihood(x, t_x, T))
    np.testing.assert_allclose(none, ratio, rtol=1e-9)
    unconditional = model.expected_number_of_purchases_up_to_time(np.array([1.0, 10.0, 50.0]))
    assert np.all(np.isfinite(unconditional)) and np.all(np.diff(unconditional) > 0)


def test_pmf_sums_to_one_and_matches_no_purchase_and_the_mean(case):
    _, _, _, _, model = case
    params = model.params_
    t = np.array([0.5, 5.0, 39.0])
    n = np.arange(0, 400)[:, None]
    pmf = model.probability_of_n_purchases_up_to_time(t[None, :], n)
    assert np.all(np.isfinite(pmf)) and np.all((pmf >= 0) & (pmf <= 1))
    np.testing.assert_allclose(pmf.sum(axis=0), 1.0, atol=1e-6)
    # the mean of P(X(t) = n) is the unconditional E[X(t)]
    np.testing.assert_allclose((n * pmf).sum(axis=0), params.expected_purchases_unconditional(t), rtol=1e-5)
    # a new customer (x = t_x = T = 0) makes no purchase in t with probability P(X(t) = 0)
    zero = np.zeros_like(t)
    np.testing.assert_allclose(params.no_purchase_probability(t, zero, zero, zero), pmf[0], rtol=1e-9)
    np.testing.assert_allclose(diag.probability_of_n_purchases(model, t[None, :], n), pmf, rtol=1e-12)


def test_simulated_counts_follow_the_pmf(case):
    _, _, truth, _, _ = case
    t = 20.0
    counts = truth.simulate_summary(np.full(40_000, t), seed=7)["frequency"].to_numpy().astype(int)
    observed = np.bincount(np.minimum(counts, 5), minlength=6) / counts.size
    pmf = truth.probability_of_n_purchases(t, np.arange(5))
    expected = np.append(pmf, 1 - pmf.sum())
    np.testing.assert_allclose(observed, expected, atol=0.01)


@pytest.mark.parametrize("name", registry.names("continuous"))
def test_a_transaction_log_simulates_and_goes_through_the_diagnostics(name):
    cls = registry.model_class(name)
    truth = cls.params_class(**TRUE[name])
    weekly = truth
    log = simulate_transactions(
        1500,
        weekly,
        diag_spend := _spend(),
        start="2020-01-01",
        end="2021-06-30",
        acquisition_days=60,
        time_unit="weeks",
        seed=3,
    )
    assert list(log.columns) == ["customer_id", "date", "amount"] and log["customer_id"].nunique() == 1500
    assert np.all(log["amount"] > 0)
    from crmvalue.features import calibration_holdout_summary

    split = calibration_holdout_summary(log, "2020-12-31", "2021-06-30", time_unit="weeks")
    model = cls().fit(split["frequency_cal"], split["recency_cal"], split["T_cal"])
    assert diag.model_family(model) == diag.model_family(model.params_) == cls.family
    assert diag.purchase_model_class(model.params_) is cls
    tables = diag.fit_diagnostics(model, log, split, "2020-12-31", "2021-06-30", "weeks")
    assert set(tables) == {"period_transactions", "tracking", "p_alive_matrix", "expected_purchases_matrix"}
    periods = tables["period_transactions"]
    assert periods["observed"].sum() == len(split)
    np.testing.assert_allclose(periods["expected"].sum(), len(split))
    assert np.all(periods["expected"] >= 0)
    tracking = tables["tracking"]
    assert (
        np.all(np.isfinite(tracking["expected_cumulative"])) and tracking["expected_cumulative"].is_monotonic_increasing
    )
    # the model tracks its own simulated data: cumulative repeat purchases within 15%
    assert tracking["expected_cumulative"].iloc[-1] == pytest.approx(tracking["actual_cumulative"].iloc[-1], rel=0.15)
    alive = tables["p_alive_matrix"].to_numpy()
    assert np.all((alive[np.isfinite(alive)] >= 0) & (alive[np.isfinite(alive)] <= 1))
    expected = tables["expected_purchases_matrix"].to_numpy()
    assert np.nanmin(expected) >= 0 and np.all(np.isfinite(expected) == np.isfinite(alive))
    spend = diag.gamma_gamma_spend_fit(diag_spend, split["frequency_cal"], split["monetary_value_cal"], bins=10)
    assert spend["observed"].sum() == int(((split["frequency_cal"] > 0) & (split["monetary_value_cal"] > 0)).sum())


def _spend():
    from crmvalue.models import GammaGammaParams

    return GammaGammaParams(p=6.25, q=3.74, v=15.44)
