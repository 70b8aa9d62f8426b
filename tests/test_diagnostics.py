"""Unit tests of crmvalue.diagnostics and its figures, against lifetimes and independent oracles.

Oracles: lifetimes' scalar formulas (BG/NBD and MBG/NBD P(X(t)=n), E[X(t)], P(alive)), a
numerical integral of the Pareto/NBD model's definition, scipy's beta-prime distribution for
the Gamma-Gamma average spend, and counts made by hand on a small transaction log.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, ModifiedBetaGeoFitter, ParetoNBDFitter
from scipy import stats
from scipy.integrate import quad

from crmvalue import diagnostics as diag
from crmvalue import plots
from crmvalue.errors import CrmvalueError
from crmvalue.models import BetaGeoModel, BetaGeoParams, GammaGammaParams

BG = {"r": 0.2426, "alpha": 4.4136, "a": 0.7929, "b": 2.4259}  # FHL (2005a), CDNOW, weeks
PARETO = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}  # same paper
GG = {"p": 6.25, "q": 3.74, "v": 15.44}  # FHL (2005b)


def _lifetimes(cls, params):
    model = cls()
    model.params_ = pd.Series(params)
    return model


def _crmvalue_bgnbd(params=BG):
    model = BetaGeoModel()
    model.params_ = BetaGeoParams(**params)
    return model


@pytest.fixture(scope="module")
def models():
    return {
        "bgnbd": _lifetimes(BetaGeoFitter, BG),
        "crmvalue": _crmvalue_bgnbd(),
        "mbgnbd": _lifetimes(ModifiedBetaGeoFitter, {"r": 0.5, "alpha": 6.0, "a": 0.9, "b": 3.0}),
        "pareto": _lifetimes(ParetoNBDFitter, PARETO),
    }


# --------------------------------------------------------------------------- P(X(t) = n)


def test_model_family(models):
    assert [diag.model_family(models[k]) for k in ("bgnbd", "crmvalue", "mbgnbd", "pareto")] == [
        "bg_nbd",
        "bg_nbd",
        "mbg_nbd",
        "pareto_nbd",
    ]
    with pytest.raises(CrmvalueError, match="unsupported"):
        diag.model_family(GammaGammaParams(**GG))


@pytest.mark.parametrize("name", ["bgnbd", "mbgnbd"])
def test_bg_family_pmf_equals_lifetimes_scalar_formula(models, name):
    model = models[name]
    t = np.array([0.5, 10.0, 38.86, 78.0])
    n = np.arange(0, 30)
    ours = diag.probability_of_n_purchases(model, t[None, :], n[:, None])
    theirs = np.array([[model.probability_of_n_purchases_up_to_time(ti, int(ni)) for ti in t] for ni in n])
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-15)


def test_crmvalue_model_gets_the_bgnbd_pmf(models):
    t, n = 38.86, np.arange(10)
    np.testing.assert_array_equal(
        diag.probability_of_n_purchases(models["crmvalue"], t, n),
        diag.probability_of_n_purchases(models["bgnbd"], t, n),
    )


def _pareto_pmf_by_integration(r, alpha, s, beta, t, x):
    """P(X(t)=x) from the model's definition: alive through t, or dead at tau in (0, t)."""

    def counts(tau):
        return stats.nbinom.pmf(x, r, alpha / (alpha + tau))  # Poisson mixed over gamma

    def dead_at(tau):
        return counts(tau) * s * beta**s / (beta + tau) ** (s + 1)

    return counts(t) * (beta / (beta + t)) ** s + quad(dead_at, 0, t, epsabs=0, epsrel=1e-12, limit=200)[0]


@pytest.mark.parametrize(
    "params",
    [PARETO, {"r": 0.553, "alpha": 14.0, "s": 0.606, "beta": 11.669}, {"r": 1.3, "alpha": 5.0, "s": 2.5, "beta": 20.0}],
)
def test_pareto_pmf_equals_numerical_integral(params, models):
    t = np.array([0.5, 38.86, 78.0])
    n = np.array([0, 1, 2, 5, 7, 20])
    ours = diag.pareto_nbd_probability_of_n_purchases(params, t[None, :], n[:, None])
    oracle = np.array([[_pareto_pmf_by_integration(*params.values(), ti, ni) for ti in t] for ni in n])
    # B1 - sum B2 cancels: the absolute error is ~1e-17, so tiny probabilities are only that close
    np.testing.assert_allclose(ours, oracle, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("name", ["bgnbd", "mbgnbd", "pareto"])
def test_pmf_sums_to_one_and_its_mean_is_lifetimes_expectation(models, name):
    model = models[name]
    t = np.array([1.0, 38.86, 78.0])
    # the Pareto/NBD sum over i <= n costs O(n^2); its CDNOW tail is below 1e-15 by n = 400
    n = np.arange(0, 400 if name == "pareto" else 3000)[:, None]
    with np.errstate(all="ignore"):
        pmf = diag.probability_of_n_purchases(model, t[None, :], n)
    assert np.all(np.isfinite(pmf)) and np.all(pmf >= 0)
    np.testing.assert_allclose(pmf.sum(axis=0), 1.0, atol=1e-6)
    np.testing.assert_allclose((n * pmf).sum(axis=0), model.expected_number_of_purchases_up_to_time(t), rtol=1e-4)


def test_expected_repeat_purchases_of_crmvalue_model_equal_lifetimes(models):
    """crmvalue's own unconditional E[X(t)], any shape of t, against lifetimes' BG/NBD."""
    t = np.array([[0.0, 1.0, 10.0], [38.86, 78.0, 500.0]])
    ours = diag.expected_repeat_purchases(models["crmvalue"], t)
    assert ours.shape == t.shape and ours[0, 0] == 0.0
    np.testing.assert_allclose(ours, models["bgnbd"].expected_number_of_purchases_up_to_time(t), rtol=1e-10)


# --------------------------------------------------------------------------- tracking


@pytest.fixture
def tiny_log():
    """Week 1 starts 2020-01-01. A: same-day repeat (not a repeat), repeats in weeks 2 and 3.
    B: acquired in week 1, repeat in week 5, a row after the observation end. C: acquired after
    the calibration end (not tracked). D: acquired in week 2, a day netted to 0 by a return."""
    rows = [
        ("A", "2020-01-01", 10.0),
        ("A", "2020-01-01", 5.0),
        ("A", "2020-01-09", 7.0),
        ("A", "2020-01-20", 8.0),
        ("B", "2020-01-05", 20.0),
        ("B", "2020-02-01", 9.0),
        ("B", "2020-03-01", 9.0),
        ("C", "2020-01-16", 4.0),
        ("C", "2020-01-20", 4.0),
        ("D", "2020-01-10", 30.0),
        ("D", "2020-01-12", 10.0),
        ("D", "2020-01-12", -10.0),
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "date", "amount"])
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


@pytest.mark.parametrize("name", ["bgnbd", "crmvalue", "pareto", "mbgnbd"])
def test_tracking_on_a_tiny_log_equals_sums_by_hand(tiny_log, models, name):
    model = models[name]
    table = diag.repeat_transactions_tracking(tiny_log, model, "2020-01-14", "2020-02-04", "weeks")
    assert list(table.index) == [1, 2, 3, 4, 5]
    assert table["actual_incremental"].tolist() == [0, 1, 1, 0, 1]
    assert table["actual_cumulative"].tolist() == [0, 1, 2, 2, 3]
    assert table.attrs == {"calibration_period": 2.0, "customers": 3, "period_days": 7}
    assert table["period_end"].iloc[-1] == pd.Timestamp("2020-02-04")
    reference = models["pareto" if name == "pareto" else "mbgnbd" if name == "mbgnbd" else "bgnbd"]
    first_days = [0, 4, 9]  # A, B, D, in days after 2020-01-01
    by_hand = [
        sum(
            float(reference.expected_number_of_purchases_up_to_time((7 * k - 1 - d) / 7)) if 7 * k - 1 > d else 0.0
            for d in first_days
        )
        for k in range(1, 6)
    ]
    np.testing.assert_allclose(table["expected_cumulative"], by_hand, rtol=1e-10)
    np.testing.assert_allclose(table["expected_incremental"].cumsum(), by_hand, rtol=1e-10)


def test_tracking_in_days_and_a_partial_last_period(tiny_log, models):
    days = diag.repeat_transactions_tracking(tiny_log, models["bgnbd"], "2020-01-14", "2020-02-04", "days")
    assert len(days) == 35 and days["actual_incremental"].sum() == 3
    assert days.loc[9, "actual_incremental"] == 1  # A on 2020-01-09, day 9
    weeks = diag.repeat_transactions_tracking(tiny_log, models["bgnbd"], "2020-01-14", "2020-02-06", "weeks")
    assert len(weeks) == 6 and weeks["period_end"].iloc[-1] == pd.Timestamp("2020-02-06")


def test_tracking_refuses_bad_windows(tiny_log, models):
    with pytest.raises(CrmvalueError, match="must be before"):
        diag.repeat_transactions_tracking(tiny_log, models["bgnbd"], "2020-02-04", "2020-01-14")
    with pytest.raises(CrmvalueError, match="no customer"):
        diag.repeat_transactions_tracking(tiny_log, models["bgnbd"], "2019-12-31", "2020-01-14")


# --------------------------------------------------------------------------- period transactions


def test_period_transactions_on_cdnow(sample_summary, models):
    table = diag.period_transactions(models["bgnbd"], sample_summary)
    # FHL (2005a), actual: 1,411 customers with no repeat, 946 repeat buyers
    assert table["observed"].tolist() == [1411, 439, 214, 100, 62, 38, 29, 64]
    assert table["expected"].sum() == pytest.approx(2357)  # the last class is the rest; see the tail test
    # each class by hand: lifetimes' scalar P(X(T_i) = n), summed over the customers' ages
    ages = sample_summary["T"].value_counts()
    for n in range(7):
        by_hand = sum(c * models["bgnbd"].probability_of_n_purchases_up_to_time(T, n) for T, c in ages.items())
        assert table.loc[n, "expected"] == pytest.approx(by_hand, rel=1e-9)


@pytest.mark.parametrize("name", ["bgnbd", "pareto", "mbgnbd"])
def test_period_transactions_last_class_is_the_pmf_tail(models, name):
    summary = pd.DataFrame(
        {"frequency": [0, 0, 3, 9, 1], "recency": [0, 0, 20, 30, 2], "T": [5.0, 39.0, 39.0, 39.0, 60.0]}
    )
    table = diag.period_transactions(models[name], summary, max_frequency=4)
    assert table["observed"].tolist() == [2, 1, 0, 1, 1]
    ages, customers = np.array([5.0, 39.0, 60.0]), np.array([1, 3, 1])
    tail = diag.probability_of_n_purchases(models[name], ages[None, :], np.arange(4, 400)[:, None]).sum(axis=0)
    assert table.loc[4, "expected"] == pytest.approx(tail @ customers, rel=1e-9)
    assert list(table.index) == [0, 1, 2, 3, 4]


def test_period_transactions_reads_calibration_columns(sample_summary, models):
    renamed = sample_summary.add_suffix("_cal")
    pd.testing.assert_frame_equal(
        diag.period_transactions(models["pareto"], renamed), diag.period_transactions(models["pareto"], sample_summary)
    )


# --------------------------------------------------------------------------- matrices


@pytest.mark.parametrize("name", ["bgnbd", "crmvalue", "pareto", "mbgnbd"])
def test_p_alive_matrix_shape_nan_and_monotone_in_recency(models, name):
    matrix = diag.p_alive_matrix(models[name], max_frequency=10, max_recency=39, T=39)
    assert matrix.shape == (40, 11)
    assert matrix.index.name == "recency" and matrix.columns.name == "frequency"
    assert matrix[0].iloc[1:].isna().all() and matrix.drop(columns=0).notna().all().all()
    assert (matrix.drop(columns=0).diff().iloc[1:] > 0).all().all()  # later last purchase, more alive
    assert ((matrix.drop(columns=0) > 0) & (matrix.drop(columns=0) <= 1)).all().all()


def test_p_alive_matrix_equals_lifetimes(models):
    ours = diag.p_alive_matrix(models["bgnbd"], 8, 20)
    theirs = models["bgnbd"].conditional_probability_alive_matrix(max_frequency=8, max_recency=20)
    mask = ours.notna().to_numpy()
    np.testing.assert_allclose(ours.to_numpy()[mask], theirs[mask], rtol=1e-12)


@pytest.mark.parametrize("name", ["bgnbd", "crmvalue", "pareto"])
def test_expected_purchases_matrix(models, name):
    model = models[name]
    matrix = diag.expected_purchases_matrix(model, 39, max_frequency=6, max_recency=30, T=38.86)
    assert matrix.shape == (31, 7)
    cell = model.conditional_expected_number_of_purchases_up_to_time(39, 2, 30, 38.86)
    assert matrix.loc[30.0, 2] == pytest.approx(float(np.squeeze(cell)), rel=1e-12)
    # more purchases is good news only if the last one was recent: silent since week 10, a
    # frequent buyer has probably gone (the row falls from x = 3), bought just now it rises
    assert (matrix.loc[10.0].diff().iloc[3:] < 0).all()
    just_bought = diag.expected_purchases_matrix(model, 39, max_frequency=6, max_recency=30, T=30)
    assert (just_bought.loc[30.0].diff().iloc[2:] > 0).all()  # x = 0 is NaN at t_x > 0


def test_customer_1_in_the_expected_purchases_matrix():
    """Hardie's spreadsheet: x=2, t_x=30.43, T=38.86 expects 1.226 purchases in 39 weeks; the
    grid's integer recencies 30 and 31 must bracket it."""
    matrix = diag.expected_purchases_matrix(_crmvalue_bgnbd(), 39, 2, 31, T=38.86)
    assert matrix.loc[30.0, 2] < 1.226 < matrix.loc[31.0, 2]


def test_matrix_refuses_recency_beyond_age(models):
    with pytest.raises(CrmvalueError, match="recency cannot exceed age"):
        diag.p_alive_matrix(models["bgnbd"], 5, 40, T=39)


# --------------------------------------------------------------------------- spend


def test_spend_density_for_one_frequency_is_beta_prime():
    """x z_bar / gamma ~ beta-prime(p x, q) (Fader-Hardie 2013, note 025)."""
    m = np.array([1.0, 10.0, 35.0, 100.0, 400.0])
    for x in (1, 2, 7):
        expected = stats.betaprime(GG["p"] * x, GG["q"], scale=GG["v"] / x).pdf(m)
        np.testing.assert_allclose(diag.spend_density(GG, m, np.full(5, x)), expected, rtol=1e-10)


def test_spend_density_integrates_to_one_and_mixes_by_customer_share():
    frequency = np.array([1, 1, 1, 2, 5, 0])  # the customer with x = 0 is ignored
    total, _ = quad(lambda m: float(diag.spend_density(GG, m, frequency)), 0, np.inf, limit=200)
    assert total == pytest.approx(1.0, abs=1e-8)
    m = np.array([12.0, 40.0])
    mix = (3 * diag.spend_density(GG, m, [1]) + diag.spend_density(GG, m, [2]) + diag.spend_density(GG, m, [5])) / 5
    np.testing.assert_allclose(diag.spend_density(GG, m, frequency), mix, rtol=1e-12)


def test_spend_fit_on_cdnow(sample_summary):
    s = sample_summary
    fit = diag.gamma_gamma_spend_fit(GammaGammaParams(**GG), s["frequency"], s["monetary_value"], bins=20)
    assert len(fit) == 20 and fit["observed"].sum() == 946  # the paper's repeat buyers
    assert fit["expected"].sum() < 946  # the model's tail beyond the largest m_x is outside the bins
    assert (fit["observed_density"] * (fit["right"] - fit["left"])).sum() == pytest.approx(1.0)
    open_ended = diag.gamma_gamma_spend_fit(GG, s["frequency"], s["monetary_value"], bins=[0, 20, 40, np.inf])
    assert open_ended["expected"].sum() == pytest.approx(946)
    # share below $20, directly from beta-prime CDFs by hand, mixed over the buyers' x
    x = s.loc[(s["frequency"] > 0) & (s["monetary_value"] > 0), "frequency"]
    by_hand = sum(
        stats.betaprime(GG["p"] * k, GG["q"], scale=GG["v"] / k).cdf(20) * c for k, c in x.value_counts().items()
    )
    assert open_ended.loc[0, "expected"] == pytest.approx(by_hand, rel=1e-9)


def test_spend_fit_refuses_no_repeat_buyers():
    with pytest.raises(CrmvalueError, match="no repeat buyer"):
        diag.gamma_gamma_spend_fit(GG, [0, 0], [0.0, 0.0])


# --------------------------------------------------------------------------- figures


def test_diagnostic_figures(tiny_log, sample_summary, models):
    tracking = diag.repeat_transactions_tracking(tiny_log, models["bgnbd"], "2020-01-14", "2020-02-04")
    fig = plots.tracking_plots(tracking)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert len(ax.lines) == 3  # actual, model, calibration end
        assert ax.lines[2].get_xdata()[0] == 2.0
    plt.close(fig)

    fig = plots.period_transactions_plot(diag.period_transactions(models["bgnbd"], sample_summary))
    (ax,) = fig.axes
    assert len(ax.patches) == 16 and ax.get_xticklabels()[-1].get_text() == "7+"
    plt.close(fig)

    fig = plots.matrix_plot(diag.p_alive_matrix(models["pareto"], 5, 12), "P(alive)", "P(alive)")
    assert len(fig.axes) == 2  # heatmap and colour bar
    assert fig.axes[0].images[0].get_array().shape == (13, 6)
    plt.close(fig)

    fit = diag.gamma_gamma_spend_fit(GG, sample_summary["frequency"], sample_summary["monetary_value"], bins=25)
    fig = plots.spend_fit_plot(fit)
    (ax,) = fig.axes
    assert len(ax.patches) == 25 and len(ax.lines) == 1
    plt.close(fig)


# --------------------------------------------------------------------------- units, families, the bundle


def test_weekly_tracking_of_a_model_fitted_in_days_equals_the_model_in_weeks(tiny_log):
    """The BG/NBD in days has alpha * 7: tracked in weeks it must give the weekly model's figures."""
    weeks = _crmvalue_bgnbd()
    days = _crmvalue_bgnbd({**BG, "alpha": BG["alpha"] * 7})
    by_week = diag.repeat_transactions_tracking(tiny_log, weeks, "2020-01-14", "2020-02-04", "weeks")
    by_day = diag.repeat_transactions_tracking(tiny_log, days, "2020-01-14", "2020-02-04", "days", period_days=7)
    pd.testing.assert_frame_equal(by_day, by_week, check_exact=False, rtol=1e-12)
    assert by_day.attrs == by_week.attrs
    with pytest.raises(CrmvalueError, match="at least one day"):
        diag.repeat_transactions_tracking(tiny_log, days, "2020-01-14", "2020-02-04", "days", period_days=0)


def test_crmvalue_models_name_their_family(sample_summary):
    from crmvalue.models import PURCHASE_MODELS

    split = sample_summary
    expected = {"bgnbd": "bg_nbd", "mbgnbd": "mbg_nbd", "paretonbd": "pareto_nbd"}
    for name in expected:  # the continuous-time models (bgbb's family is checked in test_bgbb_pipeline)
        model = PURCHASE_MODELS[name]().fit(split["frequency"], split["recency"], split["T"])
        assert diag.model_family(model) == diag.model_family(model.params_) == expected[name]
        # and so each gets its own P(X(t) = n): the MBG/NBD's differs from the BG/NBD's at n = 0
        table = diag.period_transactions(model, split)
        assert table["expected"].sum() == pytest.approx(2357)
        assert table.loc[0, "expected"] == pytest.approx(1411, rel=0.03)  # every model fits the zeros closely


def test_spend_fit_bins_can_stop_at_a_quantile(sample_summary):
    s = sample_summary
    fit = diag.gamma_gamma_spend_fit(GG, s["frequency"], s["monetary_value"], bins=10, upper_quantile=0.9)
    buyers = s.loc[(s["frequency"] > 0) & (s["monetary_value"] > 0), "monetary_value"]
    assert fit["right"].iloc[-1] == pytest.approx(np.quantile(buyers, 0.9), rel=1e-8)
    assert fit["observed"].sum() == int((buyers <= fit["right"].iloc[-1]).sum())
    with pytest.raises(CrmvalueError, match="upper_quantile"):
        diag.gamma_gamma_spend_fit(GG, s["frequency"], s["monetary_value"], upper_quantile=0)


def test_fit_diagnostics_bundle(cdnow_sample):
    from crmvalue.features import calibration_holdout_summary

    split = calibration_holdout_summary(cdnow_sample, "1997-09-30", "1998-06-30", "weeks")
    model = BetaGeoModel().fit(split["frequency_cal"], split["recency_cal"], split["T_cal"])
    tables = diag.fit_diagnostics(model, cdnow_sample, split, "1997-09-30", "1998-06-30", "weeks")
    assert set(tables) == {"period_transactions", "tracking", "p_alive_matrix", "expected_purchases_matrix"}
    assert tables["tracking"].loc[78, "actual_cumulative"] == 4339
    assert tables["tracking"].loc[78, "expected_cumulative"] == pytest.approx(4160.6, abs=0.05)
    max_frequency, max_recency = diag.matrix_grid(split["frequency_cal"], split["T_cal"])
    assert tables["p_alive_matrix"].shape == (max_recency + 1, max_frequency + 1)
    assert max_recency == 39  # the oldest customer's age at the calibration end, in weeks
    # the expected-purchases matrix is over the holdout's 39 weeks
    cell = model.conditional_expected_number_of_purchases_up_to_time(39, 2, 30, 39)
    assert tables["expected_purchases_matrix"].loc[30.0, 2] == pytest.approx(float(np.squeeze(cell)))
    figures = plots.diagnostic_figures(tables, "weeks", 39)
    assert set(figures) == {
        "plots/period_transactions.png",
        "plots/tracking.png",
        "plots/p_alive_matrix.png",
        "plots/expected_purchases_matrix.png",
    }
    assert figures["plots/tracking.png"].axes[1].get_xlabel() == "week"
    for fig in figures.values():
        plt.close(fig)
