"""BG/NBD with time-invariant covariates: the design matrix, the analytic derivatives, the reduction to
plain BG/NBD, parameter recovery on simulated customers, compression, predictions and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from crmvalue.errors import CrmvalueError
from crmvalue.models.beta_geo_fit import LIFETIMES_START
from crmvalue.models.bgnbd import BetaGeoModel, BetaGeoParams
from crmvalue.models.bgnbd_covariates import (
    BetaGeoCovariateModel,
    BetaGeoCovariateObjective,
    simulate_with_covariates,
)
from crmvalue.models.covariates import design_matrix
from crmvalue.models.objective import newton_polish

TRUTH = BetaGeoParams(0.25, 4.0, 0.8, 2.5)
GAMMA_PURCHASE = np.array([0.5, -0.3])
GAMMA_DROPOUT = np.array([0.4])


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --- design matrix ------------------------------------------------------------------------------


@pytest.fixture
def customers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [31.0, 45.0, 27.0, 60.0, 38.0],
            "channel": ["web", "store", "web", "phone", "store"],
            "member": [True, False, True, True, False],
            "tier": pd.Categorical(["b", "a", "a", "b", "b"]),
            "region": ["north"] * 5,
            "visits": [3, 3, 3, 3, 3],
        },
        index=pd.Index(["c1", "c2", "c3", "c4", "c5"], name="customer_id"),
    )


def test_design_matrix_codes_numbers_as_they_are_and_categories_against_a_reference(customers):
    matrix, names = design_matrix(customers, ["age", "channel", "member", "tier"], "customers.csv")
    assert names == ["age", "channel[store]", "channel[web]", "member[True]", "tier[b]"]
    expected = np.array(
        [
            [31.0, 0, 1, 1, 1],
            [45.0, 1, 0, 0, 0],
            [27.0, 0, 1, 1, 0],
            [60.0, 0, 0, 1, 1],
            [38.0, 1, 0, 0, 1],
        ]
    )
    np.testing.assert_array_equal(matrix, expected)
    empty, none = design_matrix(customers, [], "customers.csv")
    assert empty.shape == (5, 0) and none == []


def test_design_matrix_names_the_first_customer_with_a_missing_value(customers):
    table = customers.assign(channel=["web", "store", None, "phone", None], age=[31.0, 45.0, 27.0, np.nan, 1.0])
    with pytest.raises(CrmvalueError) as excinfo:
        design_matrix(table, ["channel"], "customers.csv")
    message = _one_line(excinfo)
    assert "customers.csv" in message and "'channel'" in message and "'c3'" in message and "2 rows" in message
    with pytest.raises(CrmvalueError) as excinfo:
        design_matrix(table, ["age"], "customers.csv")
    assert "'age'" in _one_line(excinfo) and "'c4'" in str(excinfo.value)


def test_design_matrix_lists_the_columns_when_one_is_absent(customers):
    with pytest.raises(CrmvalueError) as excinfo:
        design_matrix(customers, ["age", "income"], "customers.csv")
    message = _one_line(excinfo)
    assert "'income'" in message and "age, channel, member, tier, region, visits" in message


@pytest.mark.parametrize("column", ["region", "visits"])
def test_design_matrix_refuses_a_column_that_does_not_vary(customers, column):
    with pytest.raises(CrmvalueError) as excinfo:
        design_matrix(customers, ["age", column], "customers.csv")
    assert f"'{column}'" in _one_line(excinfo) and "not identified" in str(excinfo.value)


def test_design_matrix_refuses_linearly_dependent_columns(customers):
    table = customers.assign(young=(customers["age"] < 40).astype(float), old=(customers["age"] >= 40).astype(float))
    with pytest.raises(CrmvalueError) as excinfo:
        design_matrix(table, ["young", "old"], "customers.csv")
    assert "linearly dependent" in _one_line(excinfo)


# --- reduction to plain BG/NBD ------------------------------------------------------------------


def _rfm(summary: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(summary[c].to_numpy(float) for c in ("frequency", "recency", "T"))  # type: ignore[return-value]


@pytest.mark.parametrize("penalizer", [0.0, 0.01])
def test_without_covariates_the_fit_is_plain_bgnbd(sample_summary, penalizer):
    x, t_x, T = _rfm(sample_summary)
    plain = BetaGeoModel(penalizer=penalizer).fit(x, t_x, T)
    assert plain.penalizer_used_ == 0.0
    for z in (None, np.zeros((len(x), 0))):
        model = BetaGeoCovariateModel(penalizer=penalizer).fit(x, t_x, T, z_purchase=z, z_dropout=z)
        for name, value in plain.params_.as_dict().items():
            assert getattr(model.params_, name) == pytest.approx(value, rel=1e-6)
        assert model.log_likelihood_ == pytest.approx(plain.log_likelihood_, rel=1e-9)
        np.testing.assert_allclose(model.standard_errors_.to_numpy(), plain.standard_errors_.to_numpy(), rtol=1e-5)
        assert model.gamma_purchase_.shape == (0,) and model.gamma_dropout_.shape == (0,)


def test_the_objective_alone_finds_the_plain_bgnbd_optimum_from_lifetimes_start(sample_summary):
    """Not only from the plain optimum, where the fit starts: from lifetimes' start too."""
    x, t_x, T = _rfm(sample_summary)
    plain = BetaGeoModel().fit(x, t_x, T)
    objective = BetaGeoCovariateObjective(x, t_x, T, np.ones(len(x)), np.zeros((len(x), 0)), np.zeros((len(x), 0)))
    result = minimize(objective, LIFETIMES_START, jac=True, hess=objective.hessian, method="trust-exact")
    theta = newton_polish(objective, result.x)
    values = np.exp(theta) * np.array([1.0, 1.0 / objective.scale, 1.0, 1.0])
    np.testing.assert_allclose(values, list(plain.params_.as_dict().values()), rtol=1e-6)
    assert objective.log_likelihood(theta) == pytest.approx(plain.log_likelihood_, rel=1e-9)


def test_with_zero_coefficients_the_likelihood_is_plain_bgnbd(sample_summary):
    x, t_x, T = _rfm(sample_summary)
    plain = BetaGeoModel().fit(x, t_x, T)
    rng = np.random.default_rng(5)
    zp = np.column_stack([rng.integers(0, 2, len(x)), rng.normal(size=len(x))])
    objective = BetaGeoCovariateObjective(x, t_x, T, np.ones(len(x)), zp, rng.normal(size=(len(x), 1)))
    base = np.log(list(plain.params_.as_dict().values()))
    base[1] += np.log(objective.scale)
    assert objective.log_likelihood(np.concatenate([base, np.zeros(3)])) == pytest.approx(
        plain.log_likelihood_, rel=1e-12
    )
    assert objective.log_likelihood(np.concatenate([base, [0.2, 0.0, 0.0]])) < plain.log_likelihood_ - 1.0


# --- analytic derivatives -----------------------------------------------------------------------


def test_the_analytic_gradient_and_hessian_equal_finite_differences(sample_summary):
    x, t_x, T = _rfm(sample_summary)
    rng = np.random.default_rng(11)
    zp = np.column_stack([rng.integers(0, 2, len(x)), rng.normal(size=len(x))])  # binary, continuous
    zd = rng.normal(1.0, 0.5, size=(len(x), 1))
    objective = BetaGeoCovariateObjective(x, t_x, T, rng.integers(1, 4, len(x)), zp, zd, penalizer=0.003)
    theta = np.log([0.3, 0.1, 0.9, 2.0, 1.0, 1.0, 1.0]) + rng.normal(scale=0.3, size=7)
    theta[4:] = rng.normal(scale=0.4, size=3)
    value, gradient, hessian = objective.evaluate(theta)
    step = 1e-5
    eye = np.eye(7) * step
    numeric = np.array([(objective(theta + e)[0] - objective(theta - e)[0]) / (2 * step) for e in eye])
    np.testing.assert_allclose(gradient, numeric, rtol=1e-6)
    numeric_hessian = np.array([(objective(theta + e)[1] - objective(theta - e)[1]) / (2 * step) for e in eye])
    np.testing.assert_allclose(hessian, numeric_hessian, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(hessian, hessian.T, rtol=1e-12)


# --- recovery and likelihood ratio on simulated customers ---------------------------------------


def _simulated(n: int, gamma_purchase, gamma_dropout, seed: int):
    rng = np.random.default_rng(seed)
    zp = np.column_stack([rng.integers(0, 2, n), rng.normal(size=n)]).astype(float)
    zd = rng.integers(0, 2, (n, 1)).astype(float)
    T = rng.integers(27, 40, n).astype(float)  # weekly cohorts
    rows = simulate_with_covariates(TRUTH, gamma_purchase, gamma_dropout, zp, zd, T, seed=seed)
    return (*_rfm(rows), zp, zd)


@pytest.fixture(scope="module")
def recovered():
    x, t_x, T, zp, zd = _simulated(30_000, GAMMA_PURCHASE, GAMMA_DROPOUT, seed=2)
    model = BetaGeoCovariateModel().fit(x, t_x, T, z_purchase=zp, z_dropout=zd)
    return model, BetaGeoModel().fit(x, t_x, T)


def test_the_fit_recovers_the_coefficients_of_30000_simulated_customers(recovered):
    model, _ = recovered
    estimate = np.concatenate([list(model.params_.as_dict().values()), model.gamma_purchase_, model.gamma_dropout_])
    truth = np.concatenate([list(TRUTH.as_dict().values()), GAMMA_PURCHASE, GAMMA_DROPOUT])
    se = model.standard_errors_.to_numpy()
    assert list(model.standard_errors_.index) == [
        "r",
        "alpha",
        "a",
        "b",
        "purchase:purchase_1",
        "purchase:purchase_2",
        "dropout:dropout_1",
    ]
    assert np.all(se > 0) and np.all(se < 0.5 * np.abs(truth))  # informative, not just wide
    assert np.all(np.abs(estimate - truth) < 4 * se), (estimate, truth, se)


def test_the_likelihood_ratio_detects_covariates_that_matter_and_only_those(recovered):
    model, plain = recovered
    assert 2 * (model.log_likelihood_ - plain.log_likelihood_) > 100  # chi-square(3) beyond any doubt
    x, t_x, T, zp, zd = _simulated(30_000, [0.0, 0.0], [0.0], seed=3)
    null = BetaGeoCovariateModel().fit(x, t_x, T, z_purchase=zp, z_dropout=zd)
    statistic = 2 * (null.log_likelihood_ - BetaGeoModel().fit(x, t_x, T).log_likelihood_)
    assert -1e-6 <= statistic < 16.27  # chi-square(3) 99.9% point


def test_compressed_and_uncompressed_fits_are_equal():
    rng = np.random.default_rng(4)
    n = 4000
    table = pd.DataFrame(
        {"channel": rng.choice(["web", "store", "phone"], n), "member": rng.random(n) < 0.4},
        index=[f"c{i}" for i in range(n)],
    )
    zp, names = design_matrix(table, ["channel"], "test")
    zd, _ = design_matrix(table, ["member"], "test")
    T = rng.integers(30, 40, n).astype(float)
    rows = simulate_with_covariates(TRUTH, [0.4, -0.2], [0.5], zp, zd, T, seed=4)
    x, t_x = rows["frequency"].to_numpy(), np.round(rows["recency"].to_numpy())  # whole weeks: rows repeat
    compressed = BetaGeoCovariateModel().fit(x, t_x, T, pd.DataFrame(zp, columns=names), zd)
    raw = BetaGeoCovariateModel().fit(x, t_x, T, pd.DataFrame(zp, columns=names), zd, compress=False)
    assert compressed.n_patterns_ < n / 2 and raw.n_patterns_ == n
    assert compressed.coefficient_names_ == {"purchase": ["channel[store]", "channel[web]"], "dropout": ["dropout_1"]}
    for a, b in ((compressed, raw),):
        np.testing.assert_allclose(list(a.params_.as_dict().values()), list(b.params_.as_dict().values()), rtol=1e-8)
        np.testing.assert_allclose(a.gamma_purchase_, b.gamma_purchase_, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(a.gamma_dropout_, b.gamma_dropout_, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(a.standard_errors_, b.standard_errors_, rtol=1e-6)
        assert a.log_likelihood_ == pytest.approx(b.log_likelihood_, rel=1e-12)


# --- predictions --------------------------------------------------------------------------------


def test_predictions_are_plain_bgnbd_with_each_customers_own_parameters(recovered):
    model, _ = recovered
    history = (np.array([0.0, 2, 2, 7, 1]), np.array([0.0, 10, 10, 30, 3]), np.array([35.0, 30, 30, 38, 36]))
    zp = np.array([[0.0, 0.0], [1.0, 0.5], [0.0, -1.0], [1.0, 2.0], [1.0, 0.0]])
    zd = np.array([[0.0], [1.0], [0.0], [1.0], [1.0]])
    alive = model.p_alive(*history, zp, zd)
    expected = model.expected_purchases(52.0, *history, zp, zd)
    p, gp, gd = model.params_, model.gamma_purchase_, model.gamma_dropout_
    for i in range(5):
        own = BetaGeoParams(p.r, p.alpha * np.exp(-zp[i] @ gp), p.a * np.exp(zd[i] @ gd), p.b * np.exp(zd[i] @ gd))
        one = tuple(h[i] for h in history)
        assert alive[i] == pytest.approx(float(own.p_alive(*one)), rel=1e-12)
        assert expected[i] == pytest.approx(float(own.expected_purchases(52.0, *one)), rel=1e-12)
    assert alive[1] != pytest.approx(alive[2]) and expected[0] == pytest.approx(
        float(p.expected_purchases(52.0, 0.0, 0.0, 35.0)), rel=1e-12
    )  # the reference customer (z = 0) is the plain model


def test_simulation_draws_each_group_from_its_own_bgnbd():
    n = 40_000
    zp = np.repeat([[0.0], [1.0]], n // 2, axis=0)
    zd = np.tile([[0.0], [1.0]], (n // 2, 1))
    rows = simulate_with_covariates(TRUTH, [0.7], [-0.8], zp, zd, np.full(n, 10.0), seed=1)
    x = rows["frequency"].to_numpy()
    means = []
    for purchase in (0.0, 1.0):
        for dropout in (0.0, 1.0):
            group = x[(zp[:, 0] == purchase) & (zd[:, 0] == dropout)]
            scale = np.exp(-0.8 * dropout)
            own = BetaGeoParams(TRUTH.r, TRUTH.alpha * np.exp(-0.7 * purchase), TRUTH.a * scale, TRUTH.b * scale)
            expected = float(own.expected_purchases_unconditional(10.0))
            assert abs(group.mean() - expected) < 4 * group.std() / np.sqrt(len(group)), (group.mean(), expected)
            means.append(group.mean())
    assert means[2] > 1.5 * means[0]  # the purchase coefficient matters


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("z_purchase", "z_dropout", "words"),
    [
        (np.array([[0.0], [np.nan], [1.0], [0.0]]), None, ["z_purchase", "row 1"]),
        (None, np.array([[0.0], [1.0], [np.inf], [0.0]]), ["z_dropout", "row 2"]),
        (np.zeros((3, 1)), None, ["z_purchase", "4 rows"]),
        (np.zeros((4, 1, 1)), None, ["z_purchase", "shape"]),
        (np.ones((4, 1)), None, ["purchase_1", "does not vary"]),
        (np.array([["a"], ["b"], ["a"], ["b"]]), None, ["design_matrix"]),
    ],
)
def test_bad_covariates_are_one_line_errors(z_purchase, z_dropout, words):
    history = ([0.0, 1, 2, 3], [0.0, 5, 6, 9], [10.0, 10, 12, 12])
    with pytest.raises(CrmvalueError) as excinfo:
        BetaGeoCovariateModel().fit(*history, z_purchase=z_purchase, z_dropout=z_dropout)
    message = _one_line(excinfo)
    assert all(word in message for word in words), message


def test_bad_histories_and_prediction_shapes_are_one_line_errors(recovered):
    with pytest.raises(CrmvalueError) as excinfo:
        BetaGeoCovariateModel().fit([0.0, 1], [0.0, 5], [10.0, 10, 12])
    assert "2, 2 and 3" in _one_line(excinfo)
    with pytest.raises(CrmvalueError) as excinfo:
        BetaGeoCovariateModel().fit([0.0, 1], [0.0, 15], [10.0, 10])
    assert "recency <= T" in _one_line(excinfo)
    model, _ = recovered
    with pytest.raises(CrmvalueError) as excinfo:
        model.p_alive([1.0], [2.0], [30.0], np.zeros((1, 1)), np.zeros((1, 1)))
    assert "2 purchase and 1 dropout" in _one_line(excinfo)
