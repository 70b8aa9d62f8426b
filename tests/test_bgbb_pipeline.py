"""BG/BB from a transaction log: calendar periods as purchase opportunities (crmvalue.discrete), the registry's
``bgbb`` purchase model in periods, and recovery of known parameters from a simulated dated log.

The published donations figures (Fader, Hardie and Shang 2010) are pinned in ``tests/test_bgbb.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmvalue import diagnostics as diag
from crmvalue.discrete import (
    DAYS_PER_PERIOD,
    in_unit,
    last_whole_period,
    period_calibration_holdout_summary,
    period_numbers,
    period_summary,
    period_tracking,
)
from crmvalue.errors import CrmvalueError
from crmvalue.features import rfm_summary
from crmvalue.models import registry
from crmvalue.models.bgbb import BetaGeoBetaBinomModel, BetaGeoBetaBinomParams


def bgbb_transaction_log(
    params: BetaGeoBetaBinomParams,
    customers: int,
    start: str,
    periods: int,
    period: str = "month",
    acquisition_periods: int = 6,
    seed: int = 0,
) -> pd.DataFrame:
    """A dated log drawn from BG/BB: customer ``i`` is acquired in one of the first ``acquisition_periods``
    calendar periods from ``start`` (a purchase on a random day of it), then buys at opportunity ``k`` (the
    ``k``-th period after that) as :meth:`BetaGeoBetaBinomParams.simulate_opportunities` draws, on 1 to 3
    random days of the period (an active period, however many purchases). The log ends with the period
    ``start + periods - 1``; amounts are Gamma(4, 10)."""
    rng = np.random.default_rng(seed)
    freq = {"week": "W-SUN", "month": "M", "quarter": "Q-DEC", "year": "Y-DEC"}[period]
    origin = pd.Period(start, freq=freq).ordinal
    first = origin + rng.integers(0, acquisition_periods, customers)
    bought = params.simulate_opportunities(customers, periods, seed=seed + 1)
    who, k = np.nonzero(bought)
    ordinal = np.r_[first, first[who] + k + 1]
    owner = np.r_[np.arange(customers), who]
    keep = ordinal < origin + periods
    ordinal, owner = ordinal[keep], owner[keep]
    repeats = np.where(np.arange(len(owner)) < customers, 1, rng.integers(1, 4, len(owner)))
    ordinal, owner = np.repeat(ordinal, repeats), np.repeat(owner, repeats)
    spans = pd.PeriodIndex.from_ordinals(ordinal, freq=freq)
    begin = spans.start_time.normalize()
    length = (spans.end_time.normalize() - begin).days.to_numpy() + 1
    date = begin + pd.to_timedelta(rng.integers(0, length), unit="D")
    return pd.DataFrame(
        {
            "customer_id": np.char.add("C", owner.astype(str)).astype(object),
            "date": date,
            "amount": rng.gamma(4.0, 10.0, len(owner)),
        }
    ).sort_values(["customer_id", "date"], ignore_index=True)


# --------------------------------------------------------------------------- the discretisation, by hand

# a: purchases on 2 days of January (one active period), 1 of February, 1 of April, 1 in the partial May;
# b: first purchase in February, 2 purchases in March (one period), a return-only day in April (no purchase);
# c: first purchase in the partial last period, May
LOG = pd.DataFrame(
    {
        "customer_id": ["a", "a", "a", "a", "a", "b", "b", "b", "b", "c"],
        "date": pd.to_datetime(
            [
                "2021-01-03",
                "2021-01-30",
                "2021-02-10",
                "2021-04-30",
                "2021-05-02",
                "2021-02-28",
                "2021-03-01",
                "2021-03-31",
                "2021-04-15",
                "2021-05-10",
            ]
        ),
        "amount": [10.0, 5.0, 20.0, 7.0, 100.0, 3.0, 4.0, 6.0, -2.0, 8.0],
    }
)


def test_whole_periods_round_the_end_down():
    assert str(last_whole_period("2021-05-20", "month")) == "2021-04"
    assert str(last_whole_period("2021-04-30", "month")) == "2021-04"  # its last day: April is whole
    assert str(last_whole_period("2021-05-20", "quarter")) == "2021Q1"
    assert str(last_whole_period("2021-12-31", "year")) == "2021"
    assert str(last_whole_period("2021-12-30", "year")) == "2020"
    # weeks run Monday to Sunday: 2021-05-16 is a Sunday, 2021-05-20 a Thursday
    assert str(last_whole_period("2021-05-16", "week")) == "2021-05-10/2021-05-16"
    assert str(last_whole_period("2021-05-20", "week")) == "2021-05-10/2021-05-16"
    days = np.array([0, 3, 4, 31, 89, 90, 365])  # 1970-01-01 is a Thursday
    assert period_numbers(days, "week").tolist() == [1, 1, 2, 5, 14, 14, 53]  # Monday 1970-03-30 starts week 14
    assert period_numbers(days, "month").tolist() == [0, 0, 0, 1, 2, 3, 12]
    assert period_numbers(days, "quarter").tolist() == [0, 0, 0, 0, 0, 1, 4]
    assert DAYS_PER_PERIOD["month"] * 12 == DAYS_PER_PERIOD["year"] == 365.25


def test_period_summary_by_hand():
    summary = period_summary(LOG, "2021-05-20", "month")  # whole months to April
    # a: January first; active February (20) and April (7): x 2, t_x 3, n 3, spend (20 + 7) / 2; May ignored
    # b: February first; March active (4 + 6 in one period): x 1, t_x 1, n 2; April's return is no purchase
    # c: first purchase in the partial May: acquired, no whole opportunity yet
    expected = pd.DataFrame(
        {
            "frequency": [2.0, 1.0, 0.0],
            "recency": [3.0, 1.0, 0.0],
            "T": [3.0, 2.0, 0.0],
            "monetary_value": [13.5, 10.0, 0.0],
        },
        index=pd.Index(["a", "b", "c"], name="customer_id"),
    )
    pd.testing.assert_frame_equal(summary, expected)
    # the same customers as the continuous summary: every one is scored
    continuous = rfm_summary(LOG, "2021-05-20").iloc[::-1]
    assert summary.index.equals(continuous.index[::-1])
    pd.testing.assert_frame_equal(in_unit(continuous, LOG, "2021-05-20", "month"), summary.iloc[::-1])
    assert in_unit(continuous, LOG, "2021-05-20", "weeks") is continuous
    # by quarter the whole quarters end with Q1, the first quarter of a and b, and c's is Q2: nothing to fit
    with pytest.raises(
        CrmvalueError, match="no customer has a whole quarter after the quarter of their first purchase"
    ):
        period_summary(LOG, "2021-05-20", "quarter")


def test_calibration_holdout_by_hand():
    split = period_calibration_holdout_summary(LOG, "2021-02-27", "2021-05-20", "month")
    # calibration to January (February is not whole on the 27th): only a; holdout February..April
    assert split.index.tolist() == ["a"]
    row = split.loc["a"]
    assert (row["frequency_cal"], row["recency_cal"], row["T_cal"], row["monetary_value_cal"]) == (0, 0, 0, 0)
    assert row["frequency_holdout"] == 2  # February and April
    assert row["revenue_holdout"] == 27.0  # February 20 + April 7; May is after the last whole month
    assert row["duration_holdout"] == 3
    split = period_calibration_holdout_summary(LOG, "2021-02-28", "2021-05-20", "month")
    assert split.index.tolist() == ["a", "b"]
    assert split["T_cal"].tolist() == [1.0, 0.0] and split["frequency_cal"].tolist() == [1.0, 0.0]
    assert split["frequency_holdout"].tolist() == [1.0, 1.0]  # a: April; b: March
    assert split["revenue_holdout"].tolist() == [7.0, 8.0]  # b: 4 + 6 in March, the -2 return in April
    assert split["duration_holdout"].tolist() == [2.0, 2.0]
    with pytest.raises(CrmvalueError, match="round down to the whole months 2021-04 and 2021-04: the holdout holds no"):
        period_calibration_holdout_summary(LOG, "2021-04-30", "2021-05-20", "month")


def test_tracking_by_hand():
    # a stand-in model with E[X(t)] = t, to check the cohort arithmetic: a's cohort is January, b's February
    table = period_tracking(LOG, lambda age: age, "2021-02-28", "2021-05-20", "month")
    assert table.index.tolist() == [1, 2, 3, 4]
    assert table["period_end"].dt.strftime("%Y-%m-%d").tolist() == [
        "2021-01-31",
        "2021-02-28",
        "2021-03-31",
        "2021-04-30",
    ]
    assert table["actual_incremental"].tolist() == [0, 1, 1, 1]  # a: February, April; b: March
    assert table["expected_cumulative"].tolist() == [0.0, 1.0, 3.0, 5.0]  # a aged 0..3, b aged 0, 0, 1, 2
    assert table.attrs["calibration_period"] == 2.0 and table.attrs["customers"] == 2


# --------------------------------------------------------------------------- the registered model


PARAMS = BetaGeoBetaBinomParams(alpha=1.204, beta=0.750, gamma=0.657, delta=2.783)  # FHS (2010), donations


def test_the_purchase_interface_is_the_papers_formulas_in_periods():
    x, t_x, n = np.array([0.0, 1, 3, 6]), np.array([0.0, 1, 5, 6]), np.array([6.0, 6, 6, 6])
    np.testing.assert_array_equal(
        PARAMS.expected_purchases(5.0, x, t_x, n), PARAMS.expected_transactions(5.0, x, t_x, n)
    )
    halfway = PARAMS.expected_purchases(2.5, x, t_x, n)
    two, three = PARAMS.expected_transactions(2.0, x, t_x, n), PARAMS.expected_transactions(3.0, x, t_x, n)
    np.testing.assert_allclose(halfway, (two + three) / 2, rtol=1e-14)
    assert PARAMS.expected_purchases_unconditional(6.0) == PARAMS.expected_transactions_unconditional(6.0)
    counts = np.arange(7)
    np.testing.assert_array_equal(PARAMS.probability_of_n_purchases(6.0, counts), PARAMS.probability_of_x(6.0, counts))
    # P(no purchase in the next 2 | x, t_x, n) is the likelihood ratio of (x, t_x, n + 2) and (x, t_x, n)
    ratio = np.exp(PARAMS.per_customer_log_likelihood(x, t_x, n + 2) - PARAMS.per_customer_log_likelihood(x, t_x, n))
    np.testing.assert_allclose(PARAMS.no_purchase_probability(2.0, x, t_x, n), ratio, rtol=1e-12)
    # through the PurchaseModel names, against lifetimes: P(alive at n + 1), E[X(n, n + 5)], P(X(6) = x) and E[X(6)]
    from lifetimes import BetaGeoBetaBinomFitter

    fitter = BetaGeoBetaBinomFitter()
    fitter.params_ = pd.Series(PARAMS.as_dict())
    model = BetaGeoBetaBinomModel()
    model.params_ = PARAMS
    np.testing.assert_allclose(
        model.conditional_probability_alive(x, t_x, n), fitter.conditional_probability_alive(1, x, t_x, n), rtol=1e-9
    )
    np.testing.assert_allclose(
        model.conditional_expected_number_of_purchases_up_to_time(5, x, t_x, n),
        fitter.conditional_expected_number_of_purchases_up_to_time(5, x, t_x, n),
        rtol=1e-9,
    )
    fitter.data = pd.DataFrame({"frequency": counts, "weights": np.full(7, 1 / 7)})  # one customer in all: P(X(6) = x)
    pmf = fitter.expected_number_of_transactions_in_first_n_periods(6)["model"].to_numpy()
    np.testing.assert_allclose(model.probability_of_n_purchases_up_to_time(6, counts), pmf, rtol=1e-9)
    assert model.expected_number_of_purchases_up_to_time(6) == pytest.approx(counts @ pmf, rel=1e-9)
    with pytest.raises(CrmvalueError, match="BG/BB's time is whole periods"):
        PARAMS.in_days(7.0)


def test_the_registry_serves_bgbb():
    cls = registry.model_class("bgbb")
    assert cls is BetaGeoBetaBinomModel and cls.params_class is BetaGeoBetaBinomParams
    assert (cls.name, cls.label, cls.family, cls.data_kind) == ("bgbb", "BG/BB", "bg_bb", "discrete")
    assert diag.purchase_model_class(PARAMS) is cls and diag.model_family(PARAMS) == "bg_bb"
    assert BetaGeoBetaBinomParams.parameter_names() == ("alpha", "beta", "gamma", "delta")


# --------------------------------------------------------------------------- recovery from a dated log

TRUTH = BetaGeoBetaBinomParams(alpha=1.2, beta=2.0, gamma=0.7, delta=3.0)


@pytest.fixture(scope="module")
def simulated_log() -> pd.DataFrame:
    # 6,000 customers acquired January to June 2019; 30 months of data, to June 2021
    return bgbb_transaction_log(TRUTH, 6000, "2019-01-01", 30, "month", acquisition_periods=6, seed=16)


def test_a_simulated_log_recovers_the_parameters(simulated_log):
    summary = period_summary(simulated_log, "2021-06-30", "month")
    assert len(summary) == 6000 and summary["T"].between(24, 29).all()
    model = BetaGeoBetaBinomModel().fit(summary["frequency"], summary["recency"], summary["T"])
    assert model.boundary_ is None
    for name, true in TRUTH.as_dict().items():
        lower, upper = model.confidence_intervals_.loc[name, ["lower", "upper"]]
        log_se = np.log(upper / lower) / (2 * 1.96)
        fitted = model.params_.as_dict()[name]
        assert abs(np.log(fitted / true)) < 4 * log_se and abs(fitted / true - 1) < 0.25, (name, fitted, true)
    # the summary is the simulator's own (x, t_x, n): the same likelihood as rows drawn directly
    assert model.log_likelihood_ >= TRUTH.log_likelihood(summary["frequency"], summary["recency"], summary["T"])
    # spend per active period: the period's 1 to 3 purchases of Gamma(4, 10) each, 2 x 40 on average
    repeat = summary["frequency"] > 0
    spend = np.average(summary.loc[repeat, "monetary_value"], weights=summary.loc[repeat, "frequency"])
    assert spend == pytest.approx(80.0, rel=0.05)


def test_a_calibration_fit_forecasts_the_holdout(simulated_log):
    # the calibration end falls mid-month: calibration to December 2020, holdout January to June 2021
    split = period_calibration_holdout_summary(simulated_log, "2021-01-15", "2021-06-30", "month")
    assert split["duration_holdout"].iloc[0] == 6 and len(split) == 6000
    model = BetaGeoBetaBinomModel().fit(split["frequency_cal"], split["recency_cal"], split["T_cal"])
    x, t_x, n = split["frequency_cal"], split["recency_cal"], split["T_cal"]
    predicted = model.conditional_expected_number_of_purchases_up_to_time(6, x, t_x, n)
    assert predicted.sum() == pytest.approx(split["frequency_holdout"].sum(), rel=0.05)
    # customers with no purchase in the calibration period buy little, and the model says so
    quiet = (x == 0).to_numpy()
    assert predicted[quiet].mean() == pytest.approx(split["frequency_holdout"][quiet].mean(), abs=0.05)
    # the diagnostics' P(X(n) = x) table on the discrete split: expected customers by calibration frequency
    table = diag.period_transactions(model, split)
    assert table["expected"].sum() == pytest.approx(len(split))
    np.testing.assert_allclose(table["expected"], table["observed"], atol=0.02 * len(split))
    # and the tracking of repeat transactions per month over calibration and holdout
    tracking = period_tracking(
        simulated_log, lambda age: diag.expected_repeat_purchases(model, age), "2021-01-15", "2021-06-30", "month"
    )
    assert len(tracking) == 30 and tracking.attrs["calibration_period"] == 24
    assert tracking["expected_cumulative"].iloc[-1] == pytest.approx(tracking["actual_cumulative"].iloc[-1], rel=0.02)
    holdout = tracking["actual_incremental"].iloc[24:].sum()
    assert holdout == split["frequency_holdout"].sum()
