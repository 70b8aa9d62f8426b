"""The fit diagnostics of a purchase model with covariates, where each customer has parameters of her own.

Oracles: the plain model's tracking (pinned to the published CDNOW figures in ``tests/test_diagnostics.py``) run
once per covariate level on that level's customers, and P(X(T) = n) summed customer by customer with parameters
written out from the documented form (not through the code under test's ``params_for``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmvalue import diagnostics as diag
from crmvalue.evaluation import CovariateFit
from crmvalue.features import calibration_holdout_summary
from crmvalue.models import registry

CAL, OBS = "1997-09-30", "1998-06-30"


@pytest.fixture(scope="module")
def split(cdnow_sample):
    return calibration_holdout_summary(cdnow_sample, CAL, OBS, "weeks")


@pytest.fixture(scope="module")
def level(split):
    """A binary covariate, one per customer, that shifts nothing: every fit stays interior."""
    return pd.Series(np.random.default_rng(3).integers(0, 2, len(split)).astype(float), index=split.index, name="z")


def fitted(name: str, split: pd.DataFrame, level: pd.Series) -> CovariateFit:
    z = level.to_frame()
    return CovariateFit(name).fit(split["frequency_cal"], split["recency_cal"], split["T_cal"], z, z)


def own_params(fit: CovariateFit, z: float):
    """One customer's parameters, written from the README's form: alpha exp(-g_p z); BG/NBD and MBG/NBD
    a exp(g_d z), b exp(g_d z); Pareto/NBD beta exp(-g_d z)."""
    values = fit.params_.as_dict()
    gp, gd = float(fit.gamma_purchase_[0]), float(fit.gamma_dropout_[0])
    values["alpha"] *= np.exp(-gp * z)
    if fit.name == "paretonbd":
        values["beta"] *= np.exp(-gd * z)
    else:
        values["a"] *= np.exp(gd * z)
        values["b"] *= np.exp(gd * z)
    return type(fit.params_)(**values)


def plain_model(fit: CovariateFit, z: float):
    model = registry.model_class(fit.name)()
    model.params_ = own_params(fit, z)
    return model


@pytest.mark.parametrize("name", ["bgnbd", "mbgnbd", "paretonbd"])
def test_tracking_sums_the_plain_tracking_of_each_level(name, split, level, cdnow_sample):
    fit = fitted(name, split, level)
    assert abs(fit.gamma_purchase_[0]) > 1e-4  # the levels do get different parameters
    ours = diag.repeat_transactions_tracking(cdnow_sample, fit, CAL, OBS, "weeks")
    by_level = []
    for z in (0.0, 1.0):
        customers = level.index[level == z]
        tx = cdnow_sample[cdnow_sample["customer_id"].isin(customers)]
        by_level.append(diag.repeat_transactions_tracking(tx, plain_model(fit, z), CAL, OBS, "weeks"))
    for table in by_level:  # the same weeks: both levels hold customers first seen on the first day
        pd.testing.assert_series_equal(table["period_end"], ours["period_end"])
    np.testing.assert_allclose(
        ours["expected_cumulative"], sum(t["expected_cumulative"] for t in by_level), rtol=1e-10, atol=1e-9
    )
    np.testing.assert_array_equal(ours["actual_cumulative"], sum(t["actual_cumulative"] for t in by_level))
    assert ours.attrs["customers"] == len(split)


@pytest.mark.parametrize("name", ["bgnbd", "mbgnbd", "paretonbd"])
def test_period_transactions_sum_each_customers_own_probabilities(name, split, level):
    fit = fitted(name, split, level)
    ours = diag.period_transactions(fit, split, max_frequency=7)
    n = np.arange(7)
    by_hand = np.zeros(7)
    for T, z in zip(split["T_cal"], level):  # one customer at a time
        by_hand += own_params(fit, z).probability_of_n_purchases(T, n)
    np.testing.assert_allclose(ours["expected"].to_numpy()[:7], by_hand, rtol=1e-9)
    assert ours["expected"].sum() == pytest.approx(len(split))
    assert ours["observed"].sum() == len(split)


def test_fit_diagnostics_of_a_covariate_fit_have_no_matrices(split, level, cdnow_sample):
    fit = fitted("bgnbd", split, level)
    tables = diag.fit_diagnostics(fit, cdnow_sample, split, CAL, OBS, "weeks")
    assert set(tables) == {"period_transactions", "tracking"}
    # a covariate that shifts nothing leaves the published fit's forecast nearly where it was (4,160.6 at week 78)
    assert tables["tracking"].loc[78, "expected_cumulative"] == pytest.approx(4160.6, rel=0.01)


def test_groups_are_evaluated_in_chunks(split, level, monkeypatch):
    fit = fitted("paretonbd", split, level)
    whole = diag.period_transactions(fit, split)
    monkeypatch.setattr("crmvalue.diagnostics.tracking.GROUP_CELLS", 7 * 5)  # five groups at a time
    np.testing.assert_allclose(diag.period_transactions(fit, split)["expected"], whole["expected"], rtol=1e-12)


def test_a_customer_outside_the_fit_is_a_one_line_error(split, level):
    from crmvalue.errors import CrmvalueError

    fit = fitted("bgnbd", split, level)
    with pytest.raises(CrmvalueError, match="not among the 2,357 fitted"):
        fit.covariates_of(pd.Index(["no such customer"]))
