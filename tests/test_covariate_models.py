"""MBG/NBD and Pareto/NBD with time-invariant covariates, and the registry of covariate models: the reduction to
the plain model at zero coefficients, the analytic derivatives, recovery of known coefficients on simulated
customers, compression, predictions with each customer's own parameters, heavy buyers."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from crmvalue.errors import CrmvalueError
from crmvalue.models.bgnbd_covariates import BetaGeoCovariateModel
from crmvalue.models.covariate_models import COVARIATE_MODELS, covariate_model_class
from crmvalue.models.covariates import design_matrix
from crmvalue.models.mbgnbd import ModifiedBetaGeoModel, ModifiedBetaGeoParams
from crmvalue.models.mbgnbd_covariates import ModifiedBetaGeoCovariateModel
from crmvalue.models.mbgnbd_covariates import simulate_with_covariates as simulate_mbgnbd
from crmvalue.models.paretonbd import ParetoNBDModel, ParetoNBDParams
from crmvalue.models.paretonbd_covariates import ParetoNBDCovariateModel
from crmvalue.models.paretonbd_covariates import simulate_with_covariates as simulate_paretonbd
from crmvalue.models.registry import MODELS

# (plain model, covariate model, simulator, truth at z = 0, customers for recovery)
CASES = {
    "mbgnbd": (
        ModifiedBetaGeoModel,
        ModifiedBetaGeoCovariateModel,
        simulate_mbgnbd,
        ModifiedBetaGeoParams(0.25, 4.0, 0.8, 2.5),
        20_000,
    ),
    "paretonbd": (
        ParetoNBDModel,
        ParetoNBDCovariateModel,
        simulate_paretonbd,
        ParetoNBDParams(0.55, 10.6, 0.61, 11.7),
        8_000,
    ),
}
GAMMA_PURCHASE = np.array([0.5, -0.4])  # numeric, binary
GAMMA_DROPOUT = np.array([-0.3, 0.6])


def _rfm(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(rows[c].to_numpy(float) for c in ("frequency", "recency", "T"))  # type: ignore[return-value]


def _covariates(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(size=n), rng.integers(0, 2, n)]).astype(float)


def _simulated(name: str, n: int, gamma_purchase, gamma_dropout, seed: int):
    _, _, simulate, truth, _ = CASES[name]
    z = _covariates(n, seed)
    T = np.random.default_rng(seed + 100).integers(27, 78, n).astype(float)  # weekly cohorts
    return (*_rfm(simulate(truth, gamma_purchase, gamma_dropout, z, z, T, seed=seed)), z)


def _log_params(params, objective) -> np.ndarray:
    """The plain parameters as the objective's log-parameters (time-scale ones in its scaled time)."""
    theta = np.log(list(params.as_dict().values()))
    theta[list(objective.time_scaled)] += np.log(objective.scale)
    return theta


# --- the registry ---------------------------------------------------------------------------------


def test_the_registry_has_one_covariate_version_per_model_with_the_shared_interface():
    assert list(COVARIATE_MODELS) == ["bgnbd", "mbgnbd", "paretonbd"]
    assert covariate_model_class("bgnbd") is BetaGeoCovariateModel
    for name, model in COVARIATE_MODELS.items():
        assert model.name == name and covariate_model_class(name) is model
        for method in ("fit", "customer_params", "p_alive", "expected_purchases"):
            assert callable(getattr(model, method))
    with pytest.raises(CrmvalueError, match=r"^unknown purchase model 'pnbd' has no covariate version; .*bgnbd"):
        covariate_model_class("pnbd")
    for name in set(MODELS) - set(COVARIATE_MODELS):  # a registered model without covariates is named by its label
        with pytest.raises(CrmvalueError, match=f"^{re.escape(MODELS[name].label)} has no covariate version; "):
            covariate_model_class(name)


# --- zero coefficients are the plain model ---------------------------------------------------------


@pytest.fixture(scope="module", params=list(CASES))
def null_fit(request):
    """Covariates independent of behaviour: the plain fit and the covariate fit of the same customers."""
    name = request.param
    plain_class, model_class, *_ = CASES[name]
    x, t_x, T, z = _simulated(name, 6_000, [0.0, 0.0], [0.0, 0.0], seed=3)
    plain = plain_class().fit(x, t_x, T)
    model = model_class().fit(x, t_x, T, z_purchase=z, z_dropout=z)
    return name, plain, model, (x, t_x, T, z)


def test_at_zero_coefficients_the_likelihood_is_the_plain_models(null_fit):
    name, plain, _, (x, t_x, T, z) = null_fit
    objective = CASES[name][1].objective_class(x, t_x, T, np.ones(len(x)), z, z)
    theta = np.concatenate([_log_params(plain.params_, objective), np.zeros(4)])
    assert objective.log_likelihood(theta) == pytest.approx(plain.log_likelihood_, rel=1e-12)
    theta[4] = 0.2
    assert objective.log_likelihood(theta) < plain.log_likelihood_ - 1.0


def test_covariates_without_effect_improve_the_fit_by_chance_only(null_fit):
    _, plain, model, _ = null_fit
    statistic = 2 * (model.log_likelihood_ - plain.log_likelihood_)
    assert -1e-6 <= statistic < 18.47  # chi-square(4) 99.9% point
    estimate = np.concatenate([model.gamma_purchase_, model.gamma_dropout_])
    assert np.all(np.abs(estimate) < 4 * model.standard_errors_.to_numpy()[4:])
    for parameter, value in plain.params_.as_dict().items():
        se = model.standard_errors_[parameter]
        assert abs(getattr(model.params_, parameter) - value) < 2 * se


def test_without_covariates_the_fit_is_the_plain_one(null_fit):
    name, plain, _, (x, t_x, T, _) = null_fit
    model = CASES[name][1]().fit(x, t_x, T)
    for parameter, value in plain.params_.as_dict().items():
        assert getattr(model.params_, parameter) == pytest.approx(value, rel=1e-6)
    assert model.log_likelihood_ == pytest.approx(plain.log_likelihood_, rel=1e-10)
    np.testing.assert_allclose(model.standard_errors_.to_numpy(), plain.standard_errors_.to_numpy(), rtol=1e-4)


# --- analytic derivatives ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_the_analytic_gradient_and_hessian_equal_finite_differences(name):
    x, t_x, T, z = _simulated(name, 1_500, GAMMA_PURCHASE, GAMMA_DROPOUT, seed=11)
    rng = np.random.default_rng(11)
    zd = np.column_stack([z[:, 1], rng.normal(1.0, 0.5, len(x))])
    objective = CASES[name][1].objective_class(x, t_x, T, rng.integers(1, 4, len(x)), z, zd, penalizer=0.003)
    theta = np.concatenate([np.log([0.4, 0.2, 0.9, 0.5]) + rng.normal(scale=0.3, size=4), rng.normal(0, 0.4, 4)])
    _, gradient, hessian = objective.evaluate(theta)
    step = 1e-5
    eye = np.eye(8) * step
    numeric = np.array([(objective(theta + e)[0] - objective(theta - e)[0]) / (2 * step) for e in eye])
    np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-9)
    numeric_hessian = np.array([(objective(theta + e)[1] - objective(theta - e)[1]) / (2 * step) for e in eye])
    np.testing.assert_allclose(hessian, numeric_hessian, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(hessian, hessian.T, rtol=1e-12)


# --- recovery on simulated customers -------------------------------------------------------------


@pytest.fixture(scope="module", params=list(CASES))
def recovered(request):
    name = request.param
    n = CASES[name][4]
    x, t_x, T, z = _simulated(name, n, GAMMA_PURCHASE, GAMMA_DROPOUT, seed=2)
    table = pd.DataFrame(z, columns=["age", "member"])
    return name, CASES[name][1]().fit(x, t_x, T, z_purchase=table, z_dropout=table)


def test_the_fit_recovers_the_coefficients_of_simulated_customers(recovered):
    name, model = recovered
    truth = CASES[name][3]
    estimate = np.concatenate([list(model.params_.as_dict().values()), model.gamma_purchase_, model.gamma_dropout_])
    expected = np.concatenate([list(truth.as_dict().values()), GAMMA_PURCHASE, GAMMA_DROPOUT])
    se = model.standard_errors_.to_numpy()
    assert list(model.standard_errors_.index[4:]) == [
        "purchase:age",
        "purchase:member",
        "dropout:age",
        "dropout:member",
    ]
    assert list(model.standard_errors_.index[:4]) == list(truth.as_dict())
    assert np.all(se > 0) and np.all(se[4:] < 0.5 * np.abs(expected[4:]))  # informative, not just wide
    assert np.all(np.abs(estimate - expected) < 4 * se), (estimate, expected, se)


def test_predictions_are_the_plain_models_with_each_customers_own_parameters(recovered):
    name, model = recovered
    history = (np.array([0.0, 2, 2, 7, 1]), np.array([0.0, 10, 10, 30, 3]), np.array([35.0, 30, 30, 38, 36]))
    z = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 1.0], [2.0, 1.0], [0.5, 0.0]])
    own = model.customer_params(5, z, z)
    alive = model.p_alive(*history, z, z)
    expected = model.expected_purchases(52.0, *history, z, z)
    p, gp, gd = model.params_, model.gamma_purchase_, model.gamma_dropout_
    for i in range(5):
        scaled = {"alpha": p.alpha * np.exp(-z[i] @ gp)}
        if name == "paretonbd":
            scaled["beta"] = p.beta * np.exp(-z[i] @ gd)  # CLVTools: beta_i = beta exp(-gamma_d . z)
        else:
            scaled |= {"a": p.a * np.exp(z[i] @ gd), "b": p.b * np.exp(z[i] @ gd)}
        one = type(p)(**(p.as_dict() | scaled))
        customer = tuple(h[i] for h in history)
        assert alive[i] == pytest.approx(float(one.p_alive(*customer)), rel=1e-12)
        assert expected[i] == pytest.approx(float(one.expected_purchases(52.0, *customer)), rel=1e-12)
        assert own.expected_purchases_unconditional(10.0)[i] == pytest.approx(
            float(one.expected_purchases_unconditional(10.0)), rel=1e-12
        )
        assert own.per_customer_log_likelihood(*history)[i] == pytest.approx(
            float(one.per_customer_log_likelihood(*customer)), rel=1e-12
        )
        if name == "paretonbd":
            assert own.dert(0.01, *history)[i] == pytest.approx(float(one.dert(0.01, *customer)), rel=1e-12)
    # the reference customer (z = 0) is the plain model
    assert expected[0] == pytest.approx(float(p.expected_purchases(52.0, 0.0, 0.0, 35.0)), rel=1e-12)


# --- compression ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_categorical_covariates_compress_and_the_compressed_fit_is_the_uncompressed_one(name):
    _, model_class, simulate, truth, _ = CASES[name]
    rng = np.random.default_rng(4)
    n = 2_500
    table = pd.DataFrame({"channel": rng.choice(["web", "store", "phone"], n), "member": rng.random(n) < 0.4})
    zp, names = design_matrix(table, ["channel"], "test")
    zd, _ = design_matrix(table, ["member"], "test")
    T = rng.integers(30, 40, n).astype(float)
    x, t_x, _ = _rfm(simulate(truth, [0.4, -0.2], [0.5], zp, zd, T, seed=4))
    t_x = np.round(t_x)  # whole weeks: rows repeat
    compressed = model_class().fit(x, t_x, T, pd.DataFrame(zp, columns=names), zd)
    raw = model_class().fit(x, t_x, T, pd.DataFrame(zp, columns=names), zd, compress=False)
    assert compressed.n_patterns_ < n / 2 and raw.n_patterns_ == n
    assert compressed.coefficient_names_ == {"purchase": ["channel[store]", "channel[web]"], "dropout": ["dropout_1"]}
    np.testing.assert_allclose(
        list(compressed.params_.as_dict().values()), list(raw.params_.as_dict().values()), rtol=1e-8
    )
    np.testing.assert_allclose(compressed.gamma_purchase_, raw.gamma_purchase_, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(compressed.gamma_dropout_, raw.gamma_dropout_, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(compressed.standard_errors_, raw.standard_errors_, rtol=1e-6)
    assert compressed.log_likelihood_ == pytest.approx(raw.log_likelihood_, rel=1e-12)


# --- heavy buyers and simulation ------------------------------------------------------------------


def test_pareto_nbd_heavy_buyers_have_the_closed_form_likelihood():
    """Per-row alpha_i, beta_i through the integral rule, against note 009's hypergeometric form."""
    x = np.array([0.0, 3.0, 400.0, 2500.0, 6000.0])
    t_x = np.array([0.0, 20.0, 51.5, 51.9, 40.0])
    T = np.full(5, 52.0)
    z = np.array([[0.0], [1.0], [-2.0], [1.5], [3.0]])
    model_class = ParetoNBDCovariateModel
    objective = model_class.objective_class(x, t_x, T, np.ones(5), z, z)
    params = ParetoNBDParams(0.55, 10.6, 0.61, 11.7)
    theta = np.concatenate([_log_params(params, objective), [0.7, -0.4]])
    ll, gradient, _ = objective.per_row(theta)
    own = model_class.own_params(params, [0.7], [-0.4], z, z)
    closed = own.per_customer_log_likelihood(x, t_x, T) - x * np.log(objective.scale)  # scaled time
    np.testing.assert_allclose(ll, closed, rtol=1e-12)
    assert np.all(np.isfinite(gradient))


@pytest.mark.parametrize("name", list(CASES))
def test_simulation_draws_each_group_from_its_own_plain_model(name):
    _, model_class, simulate, truth, _ = CASES[name]
    n = 40_000
    zp = np.repeat([[0.0], [1.0]], n // 2, axis=0)
    zd = np.tile([[0.0], [1.0]], (n // 2, 1))
    x = simulate(truth, [0.7], [-0.8], zp, zd, np.full(n, 10.0), seed=1)["frequency"].to_numpy()
    for purchase in (0.0, 1.0):
        for dropout in (0.0, 1.0):
            group = x[(zp[:, 0] == purchase) & (zd[:, 0] == dropout)]
            own = model_class.own_params(truth, [0.7], [-0.8], [[purchase]], [[dropout]])
            expected = float(own.expected_purchases_unconditional(10.0)[0])
            assert abs(group.mean() - expected) < 4 * group.std() / np.sqrt(len(group)), (group.mean(), expected)
