"""The shifted-beta-geometric (sBG) model, against Fader & Hardie's published fits and brute-force computations.

Published numbers: Fader, P. S. and Hardie, B. G. S. (2007), "How to Project Customer Retention", Journal of
Interactive Marketing 21 (1). Two cohorts of 1000 customers, the counts still active at the start of years 0-7;
the projection for year 12 is the expected survivors at time 12 (index 12 of the survival curve from n0 = 1000).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from crmvalue.errors import CrmvalueError
from crmvalue.models.sbg import (
    ShiftedBetaGeometricModel,
    ShiftedBetaGeometricObjective,
    ShiftedBetaGeometricParams,
    checked_durations,
    survival_counts_to_durations,
)

REGULAR = [1000, 631, 468, 382, 326, 289, 262, 241]
HIGH_END = [1000, 869, 743, 653, 593, 551, 517, 491]
# counts, alpha, beta, log-likelihood, year-12 projection (the actual year-12 survivors were 173 and 394)
PUBLISHED = [(REGULAR, 0.704, 1.182, -1680.3, 170), (HIGH_END, 0.668, 3.806, -1611.2, 378)]


@pytest.mark.parametrize(("counts", "alpha", "beta", "ll", "year12"), PUBLISHED, ids=["regular", "high-end"])
def test_published_fits(counts, alpha, beta, ll, year12):
    model = ShiftedBetaGeometricModel().fit_survival(counts)
    assert model.params_.alpha == pytest.approx(alpha, abs=5e-4)
    assert model.params_.beta == pytest.approx(beta, abs=5e-4)
    assert model.log_likelihood_ == pytest.approx(ll, abs=0.05)
    assert model.n_ == 1000
    assert model.boundary_ is None and model.penalizer_used_ == 0.0
    projection = model.project_survival(13)
    assert projection.index[0] == 0 and projection.iloc[0] == pytest.approx(1000)
    # year 12 is the survivors at time 12; times 11 and 13 are some 9 and 16 customers off
    assert round(projection.loc[12]) == year12
    assert abs(projection.loc[11] - year12) > 5 and abs(projection.loc[13] - year12) > 5


@pytest.mark.parametrize("counts", [REGULAR, HIGH_END], ids=["regular", "high-end"])
def test_fit_on_customers_equals_fit_on_counts(counts):
    """One row per customer (unit weights) gives the same fit as the cohort counts."""
    durations, churned, weights = survival_counts_to_durations(counts)
    per_customer = np.repeat(np.arange(len(durations)), weights.astype(int))
    by_rows = ShiftedBetaGeometricModel().fit(durations[per_customer], churned[per_customer])
    by_counts = ShiftedBetaGeometricModel().fit_survival(counts)
    assert len(per_customer) == counts[0]
    assert by_rows.params_.alpha == pytest.approx(by_counts.params_.alpha, rel=1e-8)
    assert by_rows.params_.beta == pytest.approx(by_counts.params_.beta, rel=1e-8)
    assert by_rows.log_likelihood_ == pytest.approx(by_counts.log_likelihood_, rel=1e-10)
    assert by_rows.standard_errors_.to_numpy() == pytest.approx(by_counts.standard_errors_.to_numpy(), rel=1e-6)


def test_survival_counts_to_durations():
    durations, churned, weights = survival_counts_to_durations([1000, 631, 468, 468, 382])
    assert durations.tolist() == [1, 2, 3, 4, 4]
    assert churned.tolist() == [True, True, True, True, False]
    assert weights.tolist() == [369, 163, 0, 86, 382]


def test_log_likelihood_is_the_sum_of_log_probabilities():
    params = ShiftedBetaGeometricParams(0.704, 1.182)
    durations, churned, weights = survival_counts_to_durations(REGULAR)
    by_hand = weights @ np.where(churned, np.log(params.churn_pmf(durations)), np.log(params.survival(durations)))
    assert params.log_likelihood(durations, churned, weights) == pytest.approx(by_hand, rel=1e-12)
    assert by_hand == pytest.approx(-1680.3, abs=0.1)


@pytest.mark.parametrize(("alpha", "beta"), [(0.704, 1.182), (0.3, 12.0), (4.0, 0.5)])
def test_probabilities_follow_the_papers_recursions(alpha, beta):
    """FH (2007) eq. 7: P(T=1) = alpha/(alpha+beta), P(T=t) = (beta+t-2)/(alpha+beta+t-1) P(T=t-1),
    and S(t) = S(t-1) r(t) with r(t) = (beta+t-1)/(alpha+beta+t-1)."""
    params = ShiftedBetaGeometricParams(alpha, beta)
    t = np.arange(1, 60)
    pmf, survival = [alpha / (alpha + beta)], [1.0]
    for k in t[1:]:
        pmf.append(pmf[-1] * (beta + k - 2) / (alpha + beta + k - 1))
    for k in t:
        survival.append(survival[-1] * (beta + k - 1) / (alpha + beta + k - 1))
    assert params.churn_pmf(t) == pytest.approx(pmf, rel=1e-10)
    assert params.survival(np.arange(60)) == pytest.approx(survival, rel=1e-10)
    assert params.churn_pmf(t) == pytest.approx(params.survival(t - 1) - params.survival(t), rel=1e-9)
    assert params.retention_rate(t) == pytest.approx(params.survival(t) / params.survival(t - 1), rel=1e-10)
    assert params.churn_pmf(0) == 0.0 and params.survival(0) == 1.0


@pytest.mark.parametrize("data", ["regular", "censored-mix"])
def test_gradient_and_hessian_match_finite_differences(data):
    if data == "regular":
        objective = ShiftedBetaGeometricObjective(*survival_counts_to_durations(REGULAR))
    else:
        rng = np.random.default_rng(3)
        durations = rng.integers(1, 30, 500).astype(float)
        objective = ShiftedBetaGeometricObjective(durations, rng.random(500) < 0.4, rng.uniform(0.5, 3, 500))
    h = 1e-5
    for theta in (np.array([-0.35, 0.17]), np.array([1.2, -0.8]), np.array([0.0, 2.0])):
        _, gradient, hessian = objective._evaluate(theta)
        for i in range(2):
            step = np.eye(2)[i] * h
            up, down = objective._evaluate(theta + step), objective._evaluate(theta - step)
            assert gradient[i] == pytest.approx((up[0] - down[0]) / (2 * h), rel=1e-6, abs=1e-8)
            assert hessian[:, i] == pytest.approx((up[1] - down[1]) / (2 * h), rel=1e-6, abs=1e-8)


def test_standard_errors_are_the_inverse_hessian_in_the_parameters():
    """The delta-method standard errors equal those from a finite-difference Hessian of the total
    log-likelihood taken directly in (alpha, beta)."""
    model = ShiftedBetaGeometricModel().fit_survival(HIGH_END)
    data = survival_counts_to_durations(HIGH_END)
    x0, h = np.array([model.params_.alpha, model.params_.beta]), 1e-4

    def ll(x):
        return ShiftedBetaGeometricParams(*x).log_likelihood(*data)

    hessian = np.empty((2, 2))
    for i, j in np.ndindex(2, 2):
        ei, ej = np.eye(2)[i] * h, np.eye(2)[j] * h
        hessian[i, j] = (ll(x0 + ei + ej) - ll(x0 + ei - ej) - ll(x0 - ei + ej) + ll(x0 - ei - ej)) / (4 * h * h)
    expected = np.sqrt(np.diag(np.linalg.inv(-hessian)))
    assert model.standard_errors_.to_numpy() == pytest.approx(expected, rel=1e-4)
    assert list(model.standard_errors_.index) == ["alpha", "beta"]


@pytest.mark.parametrize(("alpha", "beta", "seed"), [(0.8, 2.5, 11), (2.0, 0.7, 12)])
def test_recovers_the_parameters_of_simulated_customers(alpha, beta, seed):
    """20,000 customers acquired over 12 periods: each is observed for 1 to 12 periods and censored if still active."""
    truth = ShiftedBetaGeometricParams(alpha, beta)
    n = 20_000
    lifetimes = truth.simulate(n, seed=seed)
    observed_for = np.random.default_rng(seed + 100).integers(1, 13, n)
    churned = lifetimes <= observed_for
    model = ShiftedBetaGeometricModel().fit(np.minimum(lifetimes, observed_for), churned)
    assert 0.2 < churned.mean() < 0.97  # both kinds of row are in the data
    estimate = np.array([model.params_.alpha, model.params_.beta])
    se = model.standard_errors_.to_numpy()
    assert np.all(se < 0.15 * estimate)
    assert np.all(np.abs(estimate - [alpha, beta]) < 3.5 * se)
    assert model.n_ == n


def test_simulated_durations_follow_the_pmf():
    params = ShiftedBetaGeometricParams(0.704, 1.182)
    durations = params.simulate(200_000, seed=5)
    assert durations.dtype == np.int64 and durations.min() >= 1
    t = np.arange(1, 9)
    share = (durations[:, None] == t).mean(axis=0)
    expected = params.churn_pmf(t)
    assert np.all(np.abs(share - expected) < 4 * np.sqrt(expected * (1 - expected) / len(durations)))


@pytest.mark.parametrize(("alpha", "beta"), [(0.704, 1.182), (0.668, 3.806), (3.0, 0.4)])
@pytest.mark.parametrize("tenure", [0, 1, 4, 25])
def test_p_active_next_is_the_posterior_retention(alpha, beta, tenure):
    """Brute force: integrate P(renew | theta) = 1 - theta against the prior times the likelihood of having
    renewed ``tenure`` times, (1 - theta) ** tenure."""
    params = ShiftedBetaGeometricParams(alpha, beta)
    # quad's algebraic weight (theta - 0) ** (alpha - 1) * (1 - theta) ** (beta - 1) takes the endpoint singularities
    weight = {"weight": "alg", "wvar": (alpha - 1, beta - 1)}
    evidence = quad(lambda th: (1 - th) ** tenure, 0, 1, **weight)[0]
    renews = quad(lambda th: (1 - th) ** (tenure + 1), 0, 1, **weight)[0]
    assert params.p_active_next(tenure) == pytest.approx(renews / evidence, rel=1e-8)
    assert params.p_active_next(tenure) == pytest.approx(params.retention_rate(tenure + 1))


def test_p_active_next_matches_simulated_customers():
    params = ShiftedBetaGeometricParams(0.704, 1.182)
    durations = params.simulate(500_000, seed=8)
    for tenure in (0, 2, 6):
        active = durations > tenure
        renewed = (durations[active] > tenure + 1).mean()
        p = float(params.p_active_next(tenure))
        assert abs(renewed - p) < 4 * np.sqrt(p * (1 - p) / active.sum())
    assert params.p_active_next(np.array([0, 2, 6])).shape == (3,)


# integer alphas too: there scipy's hyp2f1 returns NaN (alpha = 200) or is off in the fifth digit (alpha = 3)
@pytest.mark.parametrize(("alpha", "beta"), [(0.704, 1.182), (0.668, 3.806), (5.3, 0.3), (3.0, 140.0), (200.0, 800.0)])
@pytest.mark.parametrize(("tenure", "discount"), [(0, 0.1), (1, 0.1), (6, 0.05), (30, 0.2), (3, 1.0), (2, 0.003)])
def test_derl_equals_a_truncated_discounted_sum(alpha, beta, tenure, discount):
    """DERL = sum over future renewals k = 0, 1, ... of P(still active for them | active now) / (1 + d) ** k."""
    params = ShiftedBetaGeometricParams(alpha, beta)
    k = np.arange(40_000)
    brute = np.sum(params.survival(tenure + 1 + k) / params.survival(tenure) * (1 / (1 + discount)) ** k)
    assert params.derl(tenure, discount) == pytest.approx(brute, rel=1e-10)
    assert params.discounted_residual_value(30.0, tenure, discount) == pytest.approx(30.0 * brute, rel=1e-10)


def test_derl_limits():
    params = ShiftedBetaGeometricParams(0.704, 1.182)
    tenure = np.array([0, 3, 10])
    # with a huge discount only the next renewal counts, in full: its probability
    assert params.derl(tenure, 1e9) == pytest.approx(params.p_active_next(tenure), rel=1e-6)
    # without heterogeneity (alpha, beta -> infinity at mean theta) it is FH (2010)'s (1 - theta)(1 + d)/(d + theta)
    theta, d = 0.2, 0.1
    homogeneous = ShiftedBetaGeometricParams(theta * 1e8, (1 - theta) * 1e8)
    assert homogeneous.derl(tenure, d) == pytest.approx((1 - theta) * (1 + d) / (d + theta), rel=1e-6)
    # undiscounted: (beta + n) / (alpha - 1) further renewals, a sum whose terms fall like k ** -alpha
    k = np.arange(1_000_000)
    steep = ShiftedBetaGeometricParams(3.5, 2.0)
    assert steep.derl(4, 0.0) == pytest.approx(np.sum(steep.survival(5 + k) / steep.survival(4)), rel=1e-9)
    assert steep.derl(4, 0.0) == pytest.approx((2.0 + 4) / 2.5)
    assert params.derl(4, 0.0) == np.inf
    # one value per (tenure, discount) pair, broadcast
    grid = params.derl(np.array([[0], [3]]), np.array([0.05, 0.1, 0.05]))
    assert grid.shape == (2, 3) and grid[0, 0] == grid[0, 2] == params.derl(0, 0.05)
    # a customer who has renewed more is likelier to stay: DERL grows with tenure
    assert np.all(np.diff(params.derl(np.arange(20), 0.1)) > 0)


def test_homogeneous_churn_is_a_boundary_fit_with_a_warning():
    """Counts halving every period: one churn rate for everyone, so alpha and beta run off together."""
    counts = 1000 * 0.5 ** np.arange(8)
    model = ShiftedBetaGeometricModel().fit_survival(counts)
    assert model.boundary_ is not None and "diverge together" in model.boundary_
    assert model.warning_ is not None and model.penalizer_used_ > 0
    assert model.params_.alpha / (model.params_.alpha + model.params_.beta) == pytest.approx(0.5, abs=0.01)
    # the likelihood's supremum is the geometric model's, churn 1/2: T = t has log-probability t log(1/2)
    durations, churned, weights = survival_counts_to_durations(counts)
    geometric = weights @ (durations * np.log(0.5))
    assert geometric - 0.5 < model.log_likelihood_ <= geometric + 1e-9
    assert model.project_survival(7).to_numpy() == pytest.approx(counts, rel=0.12)


def test_project_survival_of_another_cohort():
    model = ShiftedBetaGeometricModel().fit_survival(REGULAR)
    projection = model.project_survival(5, cohort_size=250)
    assert projection.to_numpy() == pytest.approx(250 * model.params_.survival(np.arange(6)))
    assert len(projection) == 6


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda m: m.fit([], []), "non-empty"),
        (lambda m: m.fit([1, 0, 2], [True, False, True]), "row 1"),
        (lambda m: m.fit([1, 2.5], [True, False]), "whole numbers"),
        (lambda m: m.fit([1, np.nan], [True, False]), "row 1"),
        (lambda m: m.fit([-3, 2], [True, False]), "row 0"),
        (lambda m: m.fit(["a", "b"], [True, False]), "numbers"),
        (lambda m: m.fit([1, 2], [True]), "1 values for 2"),
        (lambda m: m.fit([1, 2], [1, 2]), "True/False"),
        (lambda m: m.fit([1, 2], [1, np.nan]), "True/False"),
        (lambda m: m.fit([1, 2], [True, False], weights=[1, -1]), "weight"),
        (lambda m: m.fit([1, 2], [True, False], weights=[0, 0]), "every weight is 0"),
        (lambda m: m.fit([1, 2, 5], [False, False, False]), "no customer churned"),
        (lambda m: m.fit([1, 2], [True, False], weights=[0, 7]), "no customer churned"),
        (lambda m: m.fit_survival([1000, 631, 650, 400]), "n2 = 650 > n1 = 631"),
        (lambda m: m.fit_survival([1000]), "at least two"),
        (lambda m: m.fit_survival([0, 0, 0]), "n0 > 0"),
        (lambda m: m.fit_survival([1000, np.nan]), "finite"),
        (lambda m: m.fit_survival([1000, -5]), ">= 0"),
        (lambda m: m.fit_survival([1000, 1000, 1000]), "no customer churned"),
        (lambda m: ShiftedBetaGeometricParams(0.7, 1.2).derl(3, -0.1), ">= 0"),
        (lambda m: ShiftedBetaGeometricParams(0.7, 1.2).derl(-1, 0.1), ">= 0"),
    ],
)
def test_bad_input_is_a_one_line_error(call, needle):
    with pytest.raises(CrmvalueError) as caught:
        call(ShiftedBetaGeometricModel())
    message = str(caught.value)
    assert needle in message
    assert "\n" not in message


def test_checked_durations_drops_rows_of_weight_zero_and_accepts_flags_as_numbers():
    t, c, w = checked_durations([1, 2.0, 3], np.array([1, 0, 1]), weights=[2, 0, 1.5])
    assert t.tolist() == [1, 3] and c.tolist() == [True, True] and w.tolist() == [2, 1.5]
