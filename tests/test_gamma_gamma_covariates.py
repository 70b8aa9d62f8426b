"""Gamma-Gamma with covariates on its scale (v_i = v exp(kappa . z_i)).

Oracles: the plain Gamma-Gamma objective (lifetimes' own, tested equal to lifetimes in tests/test_models.py) at
kappa = 0; finite differences of the objective; the density of a customer's mean spend written out from Fader and
Hardie (2013) eq. (1a) with scipy's gamma functions; recovery of known coefficients from data simulated exactly
from the model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import gammaln

from crmvalue.errors import CrmvalueError
from crmvalue.models.gamma_gamma import GammaGammaModel, GammaGammaObjective, GammaGammaParams, expected_average_value
from crmvalue.models.gamma_gamma_covariates import (
    GammaGammaCovariateModel,
    GammaGammaCovariateObjective,
    own_params,
    simulate_spend,
)

TRUTH = GammaGammaParams(6.0, 4.0, 15.0)
KAPPA = np.array([0.3, -0.5])


def simulated(n: int = 20_000, seed: int = 1):
    rng = np.random.default_rng(seed)
    z = pd.DataFrame({"age": rng.normal(size=n), "member": rng.integers(0, 2, n).astype(float)})
    x = rng.integers(0, 8, n).astype(float)  # one-time buyers too: they do not enter the fit
    return x, simulate_spend(TRUTH, KAPPA, z, x, seed=seed + 1), z


def eq_1a(params: GammaGammaParams, x, m) -> np.ndarray:
    """log f(m_x | p, q, v, x), Fader and Hardie (2013) eq. (1a), term by term."""
    p, q, v = params.p, params.q, params.v
    return (
        gammaln(p * x + q)
        - gammaln(p * x)
        - gammaln(q)
        + q * np.log(v)
        + (p * x - 1) * np.log(m)
        + p * x * np.log(x)
        - (p * x + q) * np.log(v + x * m)
    )


@pytest.fixture(scope="module")
def fit():
    x, m, z = simulated()
    return GammaGammaCovariateModel().fit(x, m, z), (x, m, z)


def test_with_zero_coefficients_the_objective_is_plain_gamma_gamma():
    x, m, z = simulated(3000)
    buyers = x > 0
    theta = np.log([5.0, 3.0, 12.0])
    ours = GammaGammaCovariateObjective(x[buyers], m[buyers], np.ones(buyers.sum()), z[buyers], penalizer=0.01)
    plain = GammaGammaObjective(x[buyers], m[buyers], np.ones(buyers.sum()), penalizer=0.01)
    value, gradient, hessian = ours._evaluate(np.r_[theta, 0.0, 0.0])
    p_value, p_gradient, p_hessian = plain._evaluate(theta)
    assert value == pytest.approx(p_value, rel=1e-12)
    np.testing.assert_allclose(gradient[:3], p_gradient, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(hessian[:3, :3], p_hessian, rtol=1e-9, atol=1e-12)


def test_the_analytic_gradient_and_hessian_equal_finite_differences():
    x, m, z = simulated(3000)
    buyers = x > 0
    objective = GammaGammaCovariateObjective(x[buyers], m[buyers], np.ones(buyers.sum()), z[buyers], penalizer=0.01)
    theta = np.r_[np.log([5.0, 3.0, 12.0]), 0.2, -0.3]
    _, gradient, hessian = objective._evaluate(theta)
    eps, eye = 1e-6, np.eye(len(theta))
    numeric_g = [
        (objective._evaluate(theta + eps * e)[0] - objective._evaluate(theta - eps * e)[0]) / (2 * eps) for e in eye
    ]
    numeric_h = [
        (objective._evaluate(theta + eps * e)[1] - objective._evaluate(theta - eps * e)[1]) / (2 * eps) for e in eye
    ]
    np.testing.assert_allclose(gradient, numeric_g, atol=1e-7)
    np.testing.assert_allclose(hessian, numeric_h, atol=1e-7)


def test_the_fit_recovers_known_coefficients_within_four_standard_errors(fit):
    model, _ = fit
    truth = np.r_[list(TRUTH.as_dict().values()), KAPPA]
    estimate = np.r_[list(model.params_.as_dict().values()), model.gamma_]
    z_scores = (estimate - truth) / model.standard_errors_.to_numpy()
    assert np.all(np.abs(z_scores) < 4), z_scores
    assert model.coefficient_names_ == ["age", "member"]
    assert list(model.standard_errors_.index) == ["p", "q", "v", "spend:age", "spend:member"]
    assert model.n_customers_ == int((fit[1][0] > 0).sum())
    assert model.penalizer_used_ == 0.0 and model.warning_ is None


def test_the_log_likelihood_is_the_sum_of_each_buyers_density(fit):
    model, (x, m, z) = fit
    buyers = x > 0
    own = own_params(model.params_, model.gamma_, z.to_numpy()[buyers])
    assert model.log_likelihood_ == pytest.approx(float(eq_1a(own, x[buyers], m[buyers]).sum()), rel=1e-10)
    plain = GammaGammaModel().fit(x, m)
    plain_ll = float(eq_1a(plain.params_, x[buyers], m[buyers]).sum())
    assert 2 * (model.log_likelihood_ - plain_ll) > 100  # the covariates matter: a likelihood-ratio statistic


def test_predictions_are_the_plain_formula_with_each_customers_own_scale(fit):
    model, (x, m, z) = fit
    rows = z.iloc[:5]
    ours = model.expected_average_value(x[:5], m[:5], rows)
    for i in range(5):
        v_i = model.params_.v * np.exp(rows.iloc[i].to_numpy() @ model.gamma_)
        alone = expected_average_value(GammaGammaParams(model.params_.p, model.params_.q, v_i), x[i], m[i])
        assert ours[i] == pytest.approx(float(alone), rel=1e-12)
    # one-time buyers get their covariates' population mean spend p v_i / (q - 1)
    reference = model.expected_average_value([0.0], [0.0], pd.DataFrame({"age": [0.0], "member": [0.0]}))
    assert reference[0] == pytest.approx(model.params_.population_mean)


def test_a_covariate_in_millions_gives_the_same_fit():
    x, m, z = simulated(5000, seed=5)
    units = GammaGammaCovariateModel().fit(x, m, z)
    millions = GammaGammaCovariateModel().fit(x, m, z.assign(age=z["age"] * 1e6))
    assert millions.gamma_[0] * 1e6 == pytest.approx(units.gamma_[0], rel=1e-6)
    assert millions.log_likelihood_ == pytest.approx(units.log_likelihood_, rel=1e-10)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ("flat_among_buyers", "spend covariate member does not vary among the repeat buyers"),
        ("few_buyers", "fewer than 10; fit it without spend covariates"),
        ("missing", "z_spend: covariates missing or not finite in row 3"),
    ],
)
def test_bad_input_is_a_one_line_error(change, match):
    x, m, z = simulated(2000, seed=7)
    if change == "flat_among_buyers":
        z["member"] = np.where(x > 0, 1.0, 0.0)
    elif change == "few_buyers":
        x = np.where(np.arange(len(x)) < 5, 1.0, 0.0)
    else:
        z.loc[3, "age"] = np.nan
    with pytest.raises(CrmvalueError, match=match) as caught:
        GammaGammaCovariateModel().fit(x, m, z)
    assert len(str(caught.value).splitlines()) == 1
