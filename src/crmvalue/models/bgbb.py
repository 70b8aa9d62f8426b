"""BG/BB purchase model for discrete transaction opportunities: fitted with an analytic gradient and Hessian on the
log-parameters, predictions vectorised in log space.

A living customer buys at each opportunity with probability ``p ~ Beta(alpha, beta)`` and, at the start of each
opportunity, becomes inactive for good with probability ``theta ~ Beta(gamma, delta)``; so a customer is alive at
opportunity ``t`` with probability ``(1 - theta) ** t``. A customer's data are ``x`` (opportunities with a
transaction), ``t_x`` (the last of them, 0 if none) and ``n`` (opportunities observed).

:class:`BetaGeoBetaBinomParams` and :class:`BetaGeoBetaBinomModel` are also the registry's purchase model
``bgbb`` (``data_kind = "discrete"``): the :class:`~crmvalue.models.base.PurchaseParams` interface in periods,
with ``frequency, recency, T`` holding ``x, t_x, n`` (:mod:`crmvalue.discrete` builds them from a
transaction log). A horizon ``t`` of a fraction of a period is interpolated linearly between the whole
periods around it: exact at whole periods, and it spreads a period's purchases evenly over it.

References
----------
Fader, P. S., Hardie, B. G. S. and Shang, J. (2010), "Customer-Base Analysis in a Discrete-Time Noncontractual
Setting", Marketing Science 29 (6), 1086-1108. Equation numbers below are theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy.special import betaln, digamma, gammaln, hyp2f1, logsumexp, polygamma

from crmvalue.errors import CrmvalueError
from crmvalue.models.base import PurchaseModel, PurchaseParams
from crmvalue.models.objective import (
    RIDGE_LADDER,
    FitAttempt,
    NewtonObjective,
    fit_with_ridges,
    solve,
)

NAMES = ("alpha", "beta", "gamma", "delta")
# |gamma - 1| below which the survival sum uses its expansion around gamma = 1 instead of the closed form's 0/0
_NEAR_ONE = 1e-5


def _term_grid(x: np.ndarray, t_x: np.ndarray, n: np.ndarray):
    """The arguments of eq. (5)'s terms, one row per customer: column 0 is the customer alive through ``n``,
    column ``k >= 1`` the customer alive at ``t_x + k - 1`` and gone at the next opportunity (``i = k - 1``).
    Each term is ``B(alpha + x, beta + y) / B(alpha, beta) * B(gamma + s, delta + u) / B(gamma, delta)``;
    ``valid`` masks the columns past ``n - t_x``."""
    k = np.arange(int(np.max(n - t_x, initial=0)) + 1)[None, :]
    x, t_x, n = x[:, None], t_x[:, None], n[:, None]
    valid = (k == 0) | (k <= n - t_x)
    y = np.where(k == 0, n - x, np.where(valid, t_x - x + k - 1, 0.0))
    u = np.where(k == 0, n, np.where(valid, t_x + k - 1, 0.0))
    s = np.broadcast_to((k > 0).astype(float), u.shape)
    return x, y, s, u, valid


def _log_terms(params: BetaGeoBetaBinomParams, grid) -> np.ndarray:
    a, b, g, d = params.alpha, params.beta, params.gamma, params.delta
    x, y, s, u, valid = grid
    terms = betaln(a + x, b + y) - betaln(a, b) + betaln(g + s, d + u) - betaln(g, d)
    return np.where(valid, terms, -np.inf)


def _log_likelihood(params: BetaGeoBetaBinomParams, x, t_x, n) -> np.ndarray:
    """log L(x, t_x, n), eq. (5), broadcast over the inputs; evaluated once per distinct (x, t_x, n)."""
    x, t_x, n = np.broadcast_arrays(*(np.asarray(v, float) for v in (x, t_x, n)))
    rows, inverse = np.unique(np.stack([x.ravel(), t_x.ravel(), n.ravel()], axis=1), axis=0, return_inverse=True)
    values = logsumexp(_log_terms(params, _term_grid(*rows.T)), axis=1)
    return values[inverse.ravel()].reshape(x.shape)


def _log_survival_sum(gamma: float, delta: float, first, last) -> np.ndarray:
    """log sum_{t = first + 1}^{last} B(gamma, delta + t) / B(gamma, delta): the expected number of opportunities
    ``first + 1 .. last`` at which a new customer is alive. Closed form (the sum behind eqs. 7 and 13)
    ``Gamma(gamma + delta) / Gamma(delta) / (gamma - 1) * (R(first) - R(last))``, ``R(m) = Gamma(delta + m + 1) /
    Gamma(gamma + delta + m)``; near ``gamma = 1`` its second-order expansion in ``gamma - 1``."""
    first, last = np.broadcast_arrays(np.asarray(first, float), np.asarray(last, float))
    eps = gamma - 1.0
    log_base = gammaln(gamma + delta) - gammaln(delta) + gammaln(delta + first + 1) - gammaln(gamma + delta + first)
    with np.errstate(divide="ignore", invalid="ignore"):
        if abs(eps) >= _NEAR_ONE:  # R(first) * -expm1(log R(last) - log R(first)) / eps
            log_ratio = gammaln(delta + last + 1) - gammaln(gamma + delta + last)
            log_ratio = log_ratio - gammaln(delta + first + 1) + gammaln(gamma + delta + first)
            log_scaled = np.log(-np.expm1(log_ratio) / eps)
        else:
            slope = digamma(delta + last + 1) - digamma(delta + first + 1)
            curve = polygamma(1, delta + first + 1) - polygamma(1, delta + last + 1)
            log_scaled = np.log(slope - eps * (curve + slope**2) / 2)
        return np.where(last > first, log_base + log_scaled, -np.inf)


def _interpolated(values_at, t) -> np.ndarray:
    """``values_at`` (a function of whole periods ``k >= 0``) at ``t``, linear between ``floor(t)`` and ``floor(t) + 1``."""
    t = np.asarray(t, float)
    lower = np.floor(t)
    low = values_at(lower)
    fraction = t - lower
    if not np.any(fraction):
        return low
    return low + fraction * (values_at(lower + 1.0) - low)


@dataclass(frozen=True)
class BetaGeoBetaBinomParams(PurchaseParams):
    """BG/BB parameters: purchase probability ``p ~ Beta(alpha, beta)``, dropout ``theta ~ Beta(gamma, delta)``.

    Every method broadcasts its arguments (NumPy rules) and takes ``x``, ``t_x``, ``n`` as whole numbers of
    opportunities with ``x <= t_x <= n`` (unchecked here; :class:`BetaGeoBetaBinomModel` checks its input).
    The ``PurchaseParams`` methods (``expected_purchases``, ``probability_of_n_purchases``, ...) take the
    horizon ``t`` in periods, interpolated linearly between whole periods.
    """

    name: ClassVar[str] = "bgbb"
    label: ClassVar[str] = "BG/BB"
    time_scale_params: ClassVar[tuple[str, ...]] = ()  # probabilities per opportunity: no rate scales with time

    alpha: float
    beta: float
    gamma: float
    delta: float

    def per_customer_log_likelihood(self, x, t_x, n) -> np.ndarray:
        """log L(alpha, beta, gamma, delta | x, t_x, n), eq. (5)."""
        return _log_likelihood(self, x, t_x, n)

    def log_likelihood(self, x, t_x, n, weights=None) -> float:
        terms = self.per_customer_log_likelihood(x, t_x, n)
        return float(terms.sum() if weights is None else np.asarray(weights, float) @ terms)

    def _log_alive_part(self, x, t_x, n, extra: float) -> tuple[np.ndarray, np.ndarray]:
        """``log B(alpha + x + extra, beta + n - x) / B(alpha, beta) - log L`` (the part of eqs. 11, 13 and 14 that
        does not involve theta) and ``n``, broadcast."""
        a, b = self.alpha, self.beta
        x, t_x, n = np.broadcast_arrays(*(np.asarray(v, float) for v in (x, t_x, n)))
        return betaln(a + x + extra, b + n - x) - betaln(a, b) - _log_likelihood(self, x, t_x, n), n

    def p_alive(self, x, t_x, n) -> np.ndarray:
        """P(alive at opportunity n + 1 | x, t_x, n), eq. (11)."""
        log_part, n = self._log_alive_part(x, t_x, n, 0.0)
        return np.exp(log_part + betaln(self.gamma, self.delta + n + 1) - betaln(self.gamma, self.delta))

    def expected_transactions(self, n_star, x, t_x, n) -> np.ndarray:
        """E[X(n, n + n_star) | x, t_x, n], eq. (13): expected transactions in the next ``n_star`` opportunities."""
        log_part, n = self._log_alive_part(x, t_x, n, 1.0)
        return np.exp(log_part + _log_survival_sum(self.gamma, self.delta, n, n + np.asarray(n_star, float)))

    def expected_transactions_unconditional(self, n) -> np.ndarray:
        """E[X(n)], eq. (7): expected transactions of a new customer in the first ``n`` opportunities."""
        mean_p = self.alpha / (self.alpha + self.beta)
        return mean_p * np.exp(_log_survival_sum(self.gamma, self.delta, 0.0, n))

    def probability_of_x(self, n, x) -> np.ndarray:
        """P(X(n) = x) for a new customer, eq. (8): the alive-throughout term plus, for each opportunity
        ``i = x .. n - 1`` at which the customer is last alive, ``C(i, x)`` sequences of ``x`` transactions."""
        a, b, g, d = self.alpha, self.beta, self.gamma, self.delta
        n, x = np.broadcast_arrays(np.asarray(n, float), np.asarray(x, float))
        nf, xf = n.ravel()[:, None], x.ravel()[:, None]
        i = np.arange(int(np.max(n, initial=0)))[None, :]
        ok = (i >= xf) & (i < nf)
        safe_i = np.where(ok, i, xf)
        log_sums = logsumexp(
            np.where(ok, _log_binom(safe_i, xf) + betaln(a + xf, b + safe_i - xf) + betaln(g + 1, d + safe_i), -np.inf),
            axis=1,
        )
        safe_x = np.clip(x, 0, n)
        log_first = _log_binom(n, safe_x) + betaln(a + safe_x, b + n - safe_x) + betaln(g, d + n)
        log_p = np.logaddexp(log_first, log_sums.reshape(n.shape)) - betaln(a, b) - betaln(g, d)
        return np.where((x >= 0) & (x <= n), np.exp(log_p), 0.0)

    def dert(self, discount, x, t_x, n) -> np.ndarray:
        """Discounted expected residual transactions, eq. (14): the expected transactions at opportunities
        ``n + 1, n + 2, ...``, the one at ``n + k`` discounted by ``(1 + discount) ** -k``."""
        g, d = self.gamma, self.delta
        discount = np.asarray(discount, float)
        log_part, n = self._log_alive_part(x, t_x, n, 1.0)
        series = hyp2f1(1.0, d + n + 1, g + d + n + 1, 1.0 / (1.0 + discount))
        return np.exp(log_part + betaln(g, d + n + 1) - betaln(g, d) - np.log1p(discount) + np.log(series))

    def simulate_opportunities(self, n_customers: int, n_periods: int, seed: int | None = None) -> np.ndarray:
        """Whether each of ``n_customers`` customers buys at each of opportunities ``1 .. n_periods`` (a boolean
        ``(n_customers, n_periods)`` array): the customer is alive at the first ``L`` opportunities,
        ``L + 1 ~ Geometric(theta)``, and buys at each of them with probability ``p``."""
        rng = np.random.default_rng(seed)
        p = rng.beta(self.alpha, self.beta, size=n_customers)
        alive_for = rng.geometric(rng.beta(self.gamma, self.delta, size=n_customers)) - 1
        t = np.arange(1, n_periods + 1)
        return (rng.random((n_customers, n_periods)) < p[:, None]) & (t <= alive_for[:, None])

    def simulate(
        self, n_customers: int, n_periods: int, seed: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x, t_x, n)`` of ``n_customers`` customers observed for ``n_periods`` opportunities each
        (:meth:`simulate_opportunities`)."""
        bought = self.simulate_opportunities(n_customers, n_periods, seed)
        x = bought.sum(axis=1)
        t_x = np.where(x > 0, n_periods - np.argmax(bought[:, ::-1], axis=1), 0)
        return x, t_x, np.full(n_customers, n_periods)

    # ------------------------------------------------------------------ the PurchaseParams interface, in periods

    def expected_purchases(self, t, frequency, recency, T) -> np.ndarray:
        """E[X(n, n + t) | x, t_x, n] (:meth:`expected_transactions`), ``t`` interpolated between whole periods."""
        return _interpolated(lambda k: self.expected_transactions(k, frequency, recency, T), t)

    def expected_purchases_unconditional(self, t) -> np.ndarray:
        """E[X(t)] (:meth:`expected_transactions_unconditional`), ``t`` interpolated between whole periods."""
        return _interpolated(self.expected_transactions_unconditional, t)

    def probability_of_n_purchases(self, t, n) -> np.ndarray:
        """P(X(t) = n) (:meth:`probability_of_x`), ``t`` interpolated between whole periods: a mixture of the
        two whole-period distributions, so its mean is :meth:`expected_purchases_unconditional`."""
        return _interpolated(lambda k: self.probability_of_x(k, n), t)

    def no_purchase_probability(self, t, frequency, recency, T) -> np.ndarray:
        """P(no transaction at opportunities ``n + 1 .. n + t`` | x, t_x, n): the likelihood of ``(x, t_x, n + t)``
        over that of ``(x, t_x, n)``; ``t`` interpolated between whole periods."""
        base = self.per_customer_log_likelihood(frequency, recency, T)
        n = np.asarray(T, float)
        return _interpolated(lambda k: np.exp(self.per_customer_log_likelihood(frequency, recency, n + k) - base), t)

    def simulate_summary(self, T, seed: int | None = None) -> pd.DataFrame:
        """One customer per entry of ``T`` (whole opportunities): columns ``frequency, recency, T`` (``x, t_x, n``)."""
        n = np.asarray(T, float).reshape(-1)
        if np.any((n < 0) | (n != np.round(n))):
            raise CrmvalueError("BG/BB simulates whole numbers of opportunities: every T must be a whole number >= 0")
        width = int(n.max(initial=0))
        bought = self.simulate_opportunities(len(n), width, seed) & (np.arange(1, width + 1) <= n[:, None])
        x = bought.sum(axis=1)
        t_x = np.where(x > 0, width - np.argmax(bought[:, ::-1], axis=1), 0)
        return pd.DataFrame({"frequency": x.astype(float), "recency": t_x.astype(float), "T": n})

    def in_days(self, days_per_unit: float):
        raise CrmvalueError("BG/BB's time is whole periods of purchase opportunities; it has no rates per day")


def _log_binom(n, k) -> np.ndarray:
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


class BetaGeoBetaBinomObjective(NewtonObjective):
    """The weighted mean negative log-likelihood of eq. (5) in ``theta = log(alpha, beta, gamma, delta)``, plus
    lifetimes' ``penalizer * sum(exp(theta) ** 2)``, with its analytic gradient and Hessian.

    ``log L = logsumexp_k l_k`` over the terms of :func:`_term_grid`; with ``w_k = exp(l_k - log L)``,
    ``d log L = sum_k w_k dl_k`` and ``d2 log L = sum_k w_k (d2 l_k + dl_k dl_k') - d log L d log L'``. Each ``l_k`` is
    ``betaln(a + x, b + y) - betaln(a, b)`` plus the same in ``(gamma + s, delta + u)``, whose derivatives are
    digamma and trigamma differences. In log-parameters ``g_theta = phi * g_phi`` and
    ``H_theta = diag(phi) H_phi diag(phi) + diag(phi * g_phi)``.
    """

    def __init__(self, x, t_x, n, weights, penalizer: float = 0.0):
        self.grid = _term_grid(np.asarray(x, float), np.asarray(t_x, float), np.asarray(n, float))
        self.w = np.asarray(weights, float)
        self.W, self.penalizer = float(self.w.sum()), penalizer

    def _evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        phi = np.exp(theta)
        a, b, g, d = phi
        x, y, s, u, valid = self.grid
        terms = _log_terms(BetaGeoBetaBinomParams(a, b, g, d), self.grid)
        log_l = logsumexp(terms, axis=1)
        share = np.exp(terms - log_l[:, None])  # 0 in the masked columns
        jac, hess_terms = [], []
        for p, q, first, second in ((a, b, x, y), (g, d, s, u)):
            psi_all = digamma(p + q + first + second) - digamma(p + q)
            tri_all = polygamma(1, p + q + first + second) - polygamma(1, p + q)
            jac += [digamma(p + first) - digamma(p) - psi_all, digamma(q + second) - digamma(q) - psi_all]
            hess_terms.append(
                [
                    [polygamma(1, p + first) - polygamma(1, p) - tri_all, -tri_all],
                    [-tri_all, polygamma(1, q + second) - polygamma(1, q) - tri_all],
                ]
            )
        J = np.stack(np.broadcast_arrays(*jac), axis=-1)  # (rows, terms, 4)
        ws = self.w[:, None] * share
        row_grad = np.einsum("rk,rki->ri", share, J)
        grad = self.w @ row_grad
        hess = np.einsum("rk,rki,rkj->ij", ws, J, J) - np.einsum("r,ri,rj->ij", self.w, row_grad, row_grad)
        for block, second_derivatives in enumerate(hess_terms):
            for i in range(2):
                for j in range(2):
                    hess[2 * block + i, 2 * block + j] += np.sum(ws * second_derivatives[i][j])
        g_theta = phi * grad
        c = self.penalizer
        f = -float(self.w @ log_l) / self.W + c * float((phi**2).sum())
        gradient = -g_theta / self.W + 2 * c * phi**2
        H = -(np.outer(phi, phi) * hess + np.diag(g_theta)) / self.W + np.diag(4 * c * phi**2)
        return f, gradient, H


class BetaGeoBetaBinomModel(PurchaseModel):
    """BG/BB fitted by maximum likelihood on ``log(alpha, beta, gamma, delta)`` (``scipy`` ``trust-exact`` with the
    analytic gradient and Hessian of :class:`BetaGeoBetaBinomObjective`, then Newton steps on the gradient), on the
    distinct ``(x, t_x, n)`` rows with their total weight. lifetimes' ``BetaGeoBetaBinomFitter`` maximises the same
    objective.

    A boundary fit (e.g. ``gamma`` and ``delta`` diverging together when customers do not differ in dropout) is
    refitted with each ridge of ``RIDGE_LADDER`` on the log-parameters, centred at 1, keeping the interior fit with
    the highest evidence; ``boundary_`` and ``warning_`` then say why, ``penalizer_used_`` is the ridge.

    Parameters
    ----------
    penalizer : float
        lifetimes' L2 penalty on the parameters (``penalizer_coef``), applied as lifetimes does.

    Learned state: ``params_`` (:class:`BetaGeoBetaBinomParams`), ``log_likelihood_`` (the summed log-likelihood
    at the estimate, without penalty), ``standard_errors_`` (``pd.Series``, from the inverse Hessian by the delta
    method), ``confidence_intervals_`` (95%, on the log scale), ``n_customers_``.

    Registered as the purchase model ``bgbb`` of data kind ``discrete``: ``frequency, recency, T`` are
    ``x, t_x, n`` in whole periods (:mod:`crmvalue.discrete`).
    """

    name: ClassVar[str] = "bgbb"
    label: ClassVar[str] = "BG/BB"
    family: ClassVar[str] = "bg_bb"
    data_kind: ClassVar[str] = "discrete"
    params_class = BetaGeoBetaBinomParams
    boundary_pairs: ClassVar[dict] = {("alpha", "beta"): "purchase", ("gamma", "delta"): "dropout"}

    def fit(self, frequency, recency, n_periods, weights=None) -> BetaGeoBetaBinomModel:
        """Fit on one row per customer, or on rows that each stand for ``weights`` customers."""
        from crmvalue.features import checked_weights

        x, t_x, n = _checked_history(frequency, recency, n_periods)
        w = np.ones(len(x)) if weights is None else checked_weights(weights, len(x)).astype(float)
        if not w.sum() > 0:
            raise CrmvalueError("BG/BB: every weight is 0, so there are no customers to fit")
        rows, inverse = np.unique(np.stack([x, t_x, n], axis=1), axis=0, return_inverse=True)
        totals = np.bincount(inverse.ravel(), w, len(rows))
        rows, totals = rows[totals > 0], totals[totals > 0]
        objective = BetaGeoBetaBinomObjective(rows[:, 0], rows[:, 1], rows[:, 2], totals, self.penalizer)
        self.n_customers_ = int(round(totals.sum()))  # as the other purchase models count them
        self.boundary_, self.warning_, self.penalizer_used_ = None, None, 0.0
        accepted, reason = fit_with_ridges(
            lambda ridge: self._attempt_ridge(objective, ridge), objective.W, self.boundary_pairs
        )
        if accepted is None:
            raise CrmvalueError(
                f"BG/BB did not converge (penalizer={self.penalizer}): {reason}, and no ridge up to "
                f"{RIDGE_LADDER[-1]:g} on the log-parameters gives an interior optimum; set a larger penalizer"
            )
        if reason is not None:
            self.boundary_ = reason
            self.warning_ = (
                f"BG/BB: boundary estimate ({reason}); refitted with a ridge of {accepted.ridge:g} on the "
                "log-parameters (of the ridges that give an interior optimum, the one the data support most)"
            )
        self.penalizer_used_ = accepted.ridge
        self.params_ = BetaGeoBetaBinomParams(**accepted.values)
        self.log_likelihood_ = self.params_.log_likelihood(rows[:, 0], rows[:, 1], rows[:, 2], weights=totals)
        assert accepted.covariance is not None
        self.log_param_covariance_ = accepted.covariance
        values, log_se = np.array(list(accepted.values.values())), accepted.log_standard_errors()
        self.standard_errors_ = pd.Series(values * log_se, index=list(NAMES))
        self.confidence_intervals_ = pd.DataFrame(
            {"lower": values * np.exp(-1.96 * log_se), "upper": values * np.exp(1.96 * log_se)}, index=list(NAMES)
        )
        return self

    def _attempt_ridge(self, objective: BetaGeoBetaBinomObjective, ridge: float) -> FitAttempt:
        objective.ridge, objective._cache = ridge, None
        solution = solve(objective, np.zeros(4), gtol=1e-9)
        theta, value = solution.theta, solution.value
        converged = bool(np.isfinite(value) and np.max(np.abs(solution.gradient)) < 1e-6)
        covariance = solution.covariance(objective.W)
        phi = np.exp(theta)
        return FitAttempt(
            names=NAMES,
            values=dict(zip(NAMES, phi.tolist())),
            offsets=theta,
            converged=converged,
            # the likelihood alone: fit_with_ridges takes the user's penalty and the ridge off it itself
            log_likelihood=-objective.W * (value - ridge * float(theta @ theta) - objective.penalizer * (phi**2).sum()),
            covariance=covariance,
            ridge=ridge,
            failure="" if converged else solution.message,
            penalty=objective.W * objective.penalizer * float((phi**2).sum()),
        )


def _checked_history(frequency, recency, n_periods) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, t_x, n)`` as float arrays, or a one-line :class:`CrmvalueError` naming the first bad row."""
    columns = []
    for name, values in (("frequency", frequency), ("recency", recency), ("n_periods", n_periods)):
        try:
            v = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            raise CrmvalueError(f"{name}: every value must be a number of transaction opportunities") from None
        if v.ndim != 1:
            raise CrmvalueError(f"{name}: expected one value per customer (a 1-D array), got shape {v.shape}")
        bad = np.flatnonzero(~np.isfinite(v) | (v < 0) | (v != np.round(v)))
        if len(bad):
            raise CrmvalueError(f"{name}: row {bad[0]} is {v[bad[0]]:g}; every value must be a whole number >= 0")
        columns.append(v)
    x, t_x, n = columns
    if not len(x) == len(t_x) == len(n):
        raise CrmvalueError(f"BG/BB: frequency, recency and n_periods have {len(x)}, {len(t_x)} and {len(n)} rows")
    if len(x) == 0:
        raise CrmvalueError("BG/BB: no customers to fit (the input is empty)")
    rules = (
        (x > t_x, "frequency {x:g} > recency {t:g} (x transactions need x opportunities up to the last one)"),
        ((x == 0) & (t_x > 0), "recency {t:g} with frequency 0 (a customer without transactions has recency 0)"),
        (t_x > n, "recency {t:g} > n_periods {n:g}"),
    )
    for broken, text in rules:
        bad = np.flatnonzero(broken)
        if len(bad):
            i = bad[0]
            raise CrmvalueError(f"BG/BB: row {i} has " + text.format(x=x[i], t=t_x[i], n=n[i]))
    return x, t_x, n
