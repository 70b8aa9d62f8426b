"""BG/BB (Fader, Hardie & Shang 2010): published estimates, lifetimes as an oracle, and the model's own identities."""

from __future__ import annotations

import importlib.resources

import mpmath
import numpy as np
import pandas as pd
import pytest
from scipy.special import betaln, comb

from crmvalue.errors import CrmvalueError
from crmvalue.models.bgbb import BetaGeoBetaBinomModel, BetaGeoBetaBinomObjective, BetaGeoBetaBinomParams

PUBLISHED = {"alpha": 1.204, "beta": 0.750, "gamma": 0.657, "delta": 2.783}  # FHS (2010), the donations data
PUBLISHED_LOG_LIKELIHOOD = -33225.6
# gamma < 1 (the donations fit) and gamma > 1, where the closed forms change sign inside
PARAMS = [BetaGeoBetaBinomParams(1.204, 0.750, 0.657, 2.783), BetaGeoBetaBinomParams(0.8, 2.5, 3.0, 4.0)]


@pytest.fixture(scope="module")
def donations() -> pd.DataFrame:
    return pd.read_csv(importlib.resources.files("lifetimes") / "datasets" / "donations.csv")


@pytest.fixture(scope="module")
def fitted(donations) -> BetaGeoBetaBinomModel:
    return BetaGeoBetaBinomModel().fit(donations.frequency, donations.recency, donations.periods, donations.weights)


@pytest.fixture(scope="module")
def lifetimes_fit(donations):
    from lifetimes import BetaGeoBetaBinomFitter

    return BetaGeoBetaBinomFitter().fit(donations.frequency, donations.recency, donations.periods, donations.weights)


def test_donations_reproduce_the_published_estimates(fitted, donations):
    assert donations.weights.sum() == 11104 and set(donations.periods) == {6}
    for name, value in PUBLISHED.items():
        assert round(getattr(fitted.params_, name), 3) == value, name
    assert round(fitted.log_likelihood_, 1) == PUBLISHED_LOG_LIKELIHOOD
    assert fitted.warning_ is None and fitted.penalizer_used_ == 0.0


def test_donations_match_lifetimes_estimates_and_standard_errors(fitted, lifetimes_fit):
    ours = pd.Series(fitted.params_.as_dict())
    np.testing.assert_allclose(ours[lifetimes_fit.params_.index], lifetimes_fit.params_, rtol=1e-3)
    np.testing.assert_allclose(
        fitted.standard_errors_[lifetimes_fit.standard_errors_.index], lifetimes_fit.standard_errors_, rtol=1e-3
    )
    assert np.all(fitted.standard_errors_ > 0)


def test_predictions_match_lifetimes_formulas(fitted, lifetimes_fit, donations):
    """lifetimes' methods evaluated at our estimates: eqs. (5), (11) and (13) from independent code."""
    from lifetimes import BetaGeoBetaBinomFitter

    oracle = BetaGeoBetaBinomFitter()
    oracle.params_ = pd.Series(fitted.params_.as_dict())
    x, t_x, n = (donations[c].to_numpy() for c in ("frequency", "recency", "periods"))
    p = fitted.params_
    # lifetimes adds 1e-15 to the sum of eq. (5), hence the tolerance
    lifetimes_ll = BetaGeoBetaBinomFitter._loglikelihood(tuple(oracle.params_), x, t_x, n)
    np.testing.assert_allclose(p.per_customer_log_likelihood(x, t_x, n), lifetimes_ll, rtol=1e-9)
    np.testing.assert_allclose(p.p_alive(x, t_x, n), oracle.conditional_probability_alive(1, x, t_x, n), rtol=1e-9)
    for n_star in (1, 5, 10):
        expected = oracle.conditional_expected_number_of_purchases_up_to_time(n_star, x, t_x, n)
        np.testing.assert_allclose(p.expected_transactions(n_star, x, t_x, n), expected, rtol=1e-9)
    # and lifetimes' own fit predicts the same to its estimates' precision
    np.testing.assert_allclose(
        p.expected_transactions(5, x, t_x, n),
        lifetimes_fit.conditional_expected_number_of_purchases_up_to_time(5, x, t_x, n),
        rtol=1e-4,
    )


def test_penalizer_is_applied_as_lifetimes_applies_it(donations):
    from lifetimes import BetaGeoBetaBinomFitter

    args = (donations.frequency, donations.recency, donations.periods, donations.weights)
    ours = BetaGeoBetaBinomModel(penalizer=0.01).fit(*args)
    theirs = BetaGeoBetaBinomFitter(penalizer_coef=0.01).fit(*args)
    np.testing.assert_allclose(pd.Series(ours.params_.as_dict())[theirs.params_.index], theirs.params_, rtol=1e-3)
    assert ours.params_.delta < PUBLISHED["delta"] - 0.1  # the penalty shrinks the largest parameter


@pytest.mark.parametrize("ridge", [0.0, 0.1])
def test_a_ridge_attempt_reports_the_likelihood_without_either_penalty(donations, ridge):
    """The ridge ladder's evidence takes the user's penalty and the ridge off the attempt's log-likelihood itself,
    so the attempt must report the likelihood alone (it once had the penalty taken off twice)."""
    model = BetaGeoBetaBinomModel(penalizer=0.05)
    rows = (donations.frequency, donations.recency, donations.periods)
    objective = BetaGeoBetaBinomObjective(*rows, donations.weights, penalizer=0.05)
    attempt = model._attempt_ridge(objective, ridge)
    at = BetaGeoBetaBinomParams(**attempt.values)
    assert attempt.log_likelihood == pytest.approx(at.log_likelihood(*rows, weights=donations.weights), rel=1e-12)
    assert attempt.penalty == pytest.approx(
        float(donations.weights.sum()) * 0.05 * sum(v**2 for v in attempt.values.values())
    )


@pytest.mark.parametrize("penalizer", [0.0, 0.05])
def test_analytic_gradient_and_hessian_match_finite_differences(donations, penalizer):
    objective = BetaGeoBetaBinomObjective(
        donations.frequency, donations.recency, donations.periods, donations.weights, penalizer
    )
    theta = np.log([0.7, 1.6, 1.3, 0.9])  # away from the optimum, so the gradient is not ~0
    value, gradient, hessian = objective._evaluate(theta)
    h = 1e-6
    steps = np.eye(4) * h
    numeric_gradient = [
        (objective._evaluate(theta + e)[0] - objective._evaluate(theta - e)[0]) / (2 * h) for e in steps
    ]
    numeric_hessian = np.array(
        [(objective._evaluate(theta + e)[1] - objective._evaluate(theta - e)[1]) / (2 * h) for e in steps]
    )
    assert np.max(np.abs(gradient)) > 1e-2
    np.testing.assert_allclose(gradient, numeric_gradient, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(hessian, numeric_hessian, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(hessian, hessian.T, rtol=1e-12)


def test_weights_equal_repeated_rows(donations, fitted):
    rows = donations.loc[donations.index.repeat(donations.weights)]
    assert len(rows) == 11104
    plain = BetaGeoBetaBinomModel().fit(rows.frequency, rows.recency, rows.periods)
    np.testing.assert_allclose(
        list(plain.params_.as_dict().values()), list(fitted.params_.as_dict().values()), rtol=1e-7
    )
    assert plain.log_likelihood_ == pytest.approx(fitted.log_likelihood_, rel=1e-10)


def test_parameter_recovery_from_simulated_customers():
    truth = BetaGeoBetaBinomParams(1.2, 0.75, 0.66, 2.78)
    x, t_x, n = truth.simulate(20_000, 10, seed=2010)
    model = BetaGeoBetaBinomModel().fit(x, t_x, n)
    for name, true_value in truth.as_dict().items():
        estimate, se = getattr(model.params_, name), model.standard_errors_[name]
        assert abs(estimate - true_value) < 4 * se, (name, estimate, se)
        assert se < 0.1 * true_value, (name, se)


def test_simulated_histories_follow_the_likelihood():
    """Each (x, t_x) has probability C(t_x - 1, x - 1) L(x, t_x, n): eq. (5) against the generative story."""
    params, n, size = PARAMS[0], 5, 200_000
    x, t_x, _ = params.simulate(size, n, seed=7)
    assert np.all((x <= t_x) & (t_x <= n) & ((x > 0) | (t_x == 0)))
    cells = [(0, 0)] + [(k, t) for t in range(1, n + 1) for k in range(1, t + 1)]
    cx, ct = np.array(cells).T
    probability = np.where(cx > 0, comb(ct - 1, cx - 1), 1.0) * np.exp(params.per_customer_log_likelihood(cx, ct, n))
    assert probability.sum() == pytest.approx(1.0, abs=1e-12)
    observed = np.array([np.sum((x == k) & (t_x == t)) for k, t in cells]) / size
    assert np.all(np.abs(observed - probability) < 5 * np.sqrt(probability * (1 - probability) / size) + 1e-5)


@pytest.mark.parametrize("params", PARAMS)
def test_probability_of_x_is_a_distribution_with_the_unconditional_mean(params):
    for n in (1, 2, 6, 15):
        x = np.arange(n + 1)
        probability = params.probability_of_x(n, x)
        assert np.all(probability > 0)
        assert probability.sum() == pytest.approx(1.0, abs=1e-12)
        assert probability @ x == pytest.approx(float(params.expected_transactions_unconditional(n)), rel=1e-10)
        # the marginal of eq. (5) over the recencies: an independent route to eq. (8)
        for k in range(1, n + 1):
            t = np.arange(k, n + 1)
            by_recency = comb(t - 1, k - 1) @ np.exp(params.per_customer_log_likelihood(k, t, n))
            assert by_recency == pytest.approx(float(probability[k]), rel=1e-10)
    assert params.probability_of_x(6, 7) == 0.0 and params.probability_of_x(0, 0) == pytest.approx(1.0)
    mixed = params.per_customer_log_likelihood([0, 1, 2, 3], [0, 1, 4, 3], [1, 9, 4, 12])
    np.testing.assert_allclose(
        mixed,
        [params.per_customer_log_likelihood(*h) for h in [(0, 0, 1), (1, 1, 9), (2, 4, 4), (3, 3, 12)]],
        rtol=1e-13,
    )
    # broadcast over mixed n: each entry as if evaluated alone
    grid = params.probability_of_x(np.array([[1], [2], [6], [15]]), np.arange(4))
    alone = [[params.probability_of_x(n, k) for k in range(4)] for n in (1, 2, 6, 15)]
    np.testing.assert_allclose(grid, alone, rtol=1e-13)


@pytest.mark.parametrize("params", PARAMS)
def test_dert_equals_a_brute_force_discounted_sum(params):
    histories = np.array([(0, 0, 6), (1, 1, 6), (3, 5, 6), (6, 6, 6), (2, 9, 12)]).T
    horizon = np.arange(0, 4001)[:, None]
    cumulative = params.expected_transactions(horizon, *histories)  # opportunities n+1 .. n+k, per customer
    per_period = np.diff(cumulative, axis=0)
    for discount in (0.05, 0.1, 0.3):
        brute = (per_period * (1 + discount) ** -horizon[1:].astype(float)).sum(axis=0)
        np.testing.assert_allclose(params.dert(discount, *histories), brute, rtol=1e-9)


@pytest.mark.parametrize("params", PARAMS)
def test_expected_transactions_identities(params):
    a, b = params.alpha, params.beta
    x, t_x, n = np.array([0, 1, 2, 4, 5]), np.array([0, 3, 2, 7, 5]), np.array([4, 5, 6, 8, 5])
    # one opportunity ahead: alive at n + 1 times the posterior mean of p of a customer alive through n
    np.testing.assert_allclose(
        params.expected_transactions(1, x, t_x, n), params.p_alive(x, t_x, n) * (a + x) / (a + b + n), rtol=1e-12
    )
    assert np.all(params.expected_transactions(0, x, t_x, n) == 0)
    # a customer with no history is a new customer
    horizon = np.array([1, 3, 10, 50])
    np.testing.assert_allclose(
        params.expected_transactions(horizon, 0, 0, 0), params.expected_transactions_unconditional(horizon), rtol=1e-12
    )
    direct = (
        a
        / (a + b)
        * np.cumsum(np.exp(betaln(params.gamma, params.delta + np.arange(1, 51)) - betaln(params.gamma, params.delta)))
    )
    np.testing.assert_allclose(params.expected_transactions_unconditional(horizon), direct[horizon - 1], rtol=1e-12)


@pytest.mark.parametrize("gamma", [1 - 1e-4, 1 - 2e-5, 1 - 5e-6, 1.0, 1 + 3e-6, 1 + 2e-5, 1 + 1e-3])
def test_expected_transactions_are_continuous_through_gamma_one(gamma):
    """eqs. (7) and (13) divide by gamma - 1; near 1 a series is used, checked against 40-digit sums."""
    mpmath.mp.dps = 40
    params = BetaGeoBetaBinomParams(1.2, 0.75, gamma, 2.78)
    g, d = mpmath.mpf(gamma), mpmath.mpf("2.78")
    exact = (
        mpmath.mpf("1.2")
        / mpmath.mpf("1.95")
        * mpmath.fsum(mpmath.beta(g, d + t) / mpmath.beta(g, d) for t in range(1, 31))
    )
    assert float(params.expected_transactions_unconditional(30)) == pytest.approx(float(exact), rel=1e-8)


@pytest.mark.parametrize(
    ("frequency", "recency", "n_periods", "weights", "match"),
    [
        ([], [], [], None, "empty"),
        ([1, np.nan], [1, 2], [3, 3], None, r"frequency: row 1 is nan"),
        ([1, 0], [1, -1], [3, 3], None, r"recency: row 1 is -1"),
        ([1, 1], [1, 2], [3, 2.5], None, r"n_periods: row 1 is 2.5"),
        ([1, 3], [1, 2], [3, 3], None, r"row 1 has frequency 3 > recency 2"),
        ([0, 0], [0, 2], [3, 3], None, r"row 1 has recency 2 with frequency 0"),
        ([1, 2], [1, 4], [3, 3], None, r"row 1 has recency 4 > n_periods 3"),
        ([1, 2], [1, 2], [3], None, "rows"),
        (["a"], [1], [3], None, "frequency: every value must be a number"),
        ([1, 2], [1, 2], [3, 3], [1, -2], "weights"),
        ([1, 2], [1, 2], [3, 3], [0, 0], "every weight is 0"),
    ],
)
def test_bad_input_is_one_line_error(frequency, recency, n_periods, weights, match):
    with pytest.raises(CrmvalueError, match=match) as info:
        BetaGeoBetaBinomModel().fit(frequency, recency, n_periods, weights)
    assert "\n" not in str(info.value)


def test_boundary_fit_is_refitted_with_a_ridge():
    """Every customer buys at every opportunity: p -> 1 and theta -> 0, no interior maximum without a ridge."""
    model = BetaGeoBetaBinomModel().fit([6] * 50, [6] * 50, [6] * 50)
    assert model.penalizer_used_ > 0 and "boundary estimate" in model.warning_
    values = np.array(list(model.params_.as_dict().values()))
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(model.standard_errors_))
    assert model.params_.alpha > 5 * model.params_.beta and model.params_.delta > 5 * model.params_.gamma
