"""Shifted-beta-geometric (sBG) model of retention in a contractual (subscription) setting.

Each customer cancels at the end of any period with her own probability ``theta ~ Beta(alpha, beta)``;
the period in which she cancels, her duration ``T``, is then shifted-geometric, and over customers::

    P(T = t) = B(alpha + 1, beta + t - 1) / B(alpha, beta),   t = 1, 2, ...
    S(t) = P(T > t) = B(alpha, beta + t) / B(alpha, beta),     S(0) = 1
    r(t) = S(t) / S(t - 1) = (beta + t - 1) / (alpha + beta + t - 1)

Conventions (one for the whole module):

- A customer acquired at time 0 is in period 1; at the end of each period she renews or cancels.
  ``S(t)`` is the share still active at time ``t``, the start of period ``t + 1``.
- ``tenure`` is the number of renewals made so far, which is the number of periods survived (``T > tenure``);
  the customer is now in period ``tenure + 1``. A new customer has tenure 0. Fader and Hardie (2010)'s customer
  "who has made n - 1 renewals" has tenure ``n - 1``.
- Survival counts ``[n0, n1, ..., nk]`` are the customers active at times 0..k: ``n_{t-1} - n_t`` cancelled
  in period ``t`` (``T = t``) and the ``nk`` still active are censored (``T > k``).

References
----------
Fader, P. S. and Hardie, B. G. S. (2007), "How to Project Customer Retention",
Journal of Interactive Marketing 21 (1), 76-90.
Fader, P. S. and Hardie, B. G. S. (2010), "Customer-Base Valuation in a Contractual Setting:
The Perils of Ignoring Heterogeneity", Marketing Science 29 (1), 85-93.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.special import betaln, digamma, gammaln, polygamma

from crmvalue.errors import CrmvalueError
from crmvalue.models.objective import (
    FitAttempt,
    NewtonObjective,
    fit_with_ridges,
    solve,
)

_NAMES = ("alpha", "beta")


@dataclass(frozen=True)
class ShiftedBetaGeometricParams:
    """Churn probability per period ``theta ~ Beta(alpha, beta)``; every method is vectorised over its arrays."""

    alpha: float
    beta: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def churn_pmf(self, t) -> np.ndarray:
        """P(T = t), the share of a cohort that cancels in period ``t`` (0 for ``t < 1``)."""
        t = np.asarray(t, float)
        with np.errstate(invalid="ignore"):
            pmf = np.exp(betaln(self.alpha + 1, self.beta + t - 1) - betaln(self.alpha, self.beta))
        return np.where(t >= 1, pmf, 0.0)

    def survival(self, t) -> np.ndarray:
        """S(t) = P(T > t), the share of a cohort still active at time ``t`` (1 for ``t <= 0``)."""
        t = np.asarray(t, float)
        with np.errstate(invalid="ignore"):
            s = np.exp(betaln(self.alpha, self.beta + t) - betaln(self.alpha, self.beta))
        return np.where(t > 0, s, 1.0)

    def retention_rate(self, t) -> np.ndarray:
        """r(t) = P(T > t | T > t - 1), the share of the customers active in period ``t >= 1`` who renew at its end."""
        t = np.asarray(t, float)
        return (self.beta + t - 1) / (self.alpha + self.beta + t - 1)

    def p_active_next(self, tenure) -> np.ndarray:
        """P(T > tenure + 1 | T > tenure): the chance that a customer who has renewed ``tenure`` times renews once more.

        Her posterior churn probability is ``Beta(alpha, beta + tenure)``, so this is
        ``(beta + tenure) / (alpha + beta + tenure)``, the cohort's retention rate ``r(tenure + 1)``.
        """
        n = np.asarray(tenure, float)
        return (self.beta + n) / (self.alpha + self.beta + n)

    def derl(self, tenure, discount) -> np.ndarray:
        """Discounted expected residual lifetime of a customer who has renewed ``tenure`` times (Fader-Hardie 2010).

        Valued just before her next renewal, as in the paper: the ``k``-th renewal from now (k = 0, 1, ...)
        is discounted by ``(1 + discount) ** k``, so the next one counts in full::

            DERL = sum_k S(tenure + 1 + k) / S(tenure) / (1 + d) ** k
                 = (beta + n) / (alpha + beta + n) * 2F1(1, beta + n + 1; alpha + beta + n + 1; 1 / (1 + d))

        with ``n = tenure`` (the paper's ``n - 1`` renewals). With ``discount = 0`` it is the undiscounted
        expected number of further renewals, ``(beta + n) / (alpha - 1)``, infinite for ``alpha <= 1``.
        The hypergeometric function is :func:`_hyp2f1_one`, evaluated once per distinct (tenure, discount).
        """
        n, d = np.broadcast_arrays(np.asarray(tenure, float), np.asarray(discount, float))
        if not (np.all(np.isfinite(n)) and np.all(np.isfinite(d)) and np.all(n >= 0) and np.all(d >= 0)):
            raise CrmvalueError("sBG: tenure and discount must be finite and >= 0")
        pairs, codes = np.unique(np.column_stack([n.ravel(), d.ravel()]), axis=0, return_inverse=True)
        b = self.beta + pairs[:, 0]
        value = np.full(len(pairs), b / (self.alpha - 1) if self.alpha > 1 else np.inf)
        now, bd = pairs[:, 1] > 0, b[pairs[:, 1] > 0]
        value[now] = bd / (self.alpha + bd) * _hyp2f1_one(bd + 1, self.alpha + bd + 1, 1.0 / (1.0 + pairs[now, 1]))
        return value[codes.ravel()].reshape(n.shape)

    def discounted_residual_value(self, fee, tenure, discount) -> np.ndarray:
        """Expected residual lifetime value: ``fee`` per renewal times :meth:`derl`."""
        return np.asarray(fee, float) * self.derl(tenure, discount)

    def log_likelihood(self, durations, churned, weights=None) -> float:
        """Total log-likelihood: ``log P(T = t)`` for a customer who churned, ``log S(t)`` for one still active."""
        objective = ShiftedBetaGeometricObjective(*checked_durations(durations, churned, weights))
        value = objective._evaluate(np.log([self.alpha, self.beta]))[0]
        return float(-value * objective.W)

    def simulate(self, n: int, seed=None) -> np.ndarray:
        """Durations ``T`` (the period of cancellation, >= 1) of ``n`` customers drawn from the model.

        A churn probability that underflows to 0 is drawn as the smallest positive float, so that
        customer's duration is astronomically long (the largest int64) rather than undefined.
        """
        rng = np.random.default_rng(seed)
        theta = np.maximum(rng.beta(self.alpha, self.beta, size=n), np.finfo(float).tiny)
        return rng.geometric(theta).astype(np.int64)


def _hyp2f1_one(b: np.ndarray, c: np.ndarray, x: np.ndarray, max_depth: int = 1_000_000) -> np.ndarray:
    """``2F1(1, b; c; x)`` for ``0 < x < 1`` and ``c > b > 0``, by Gauss's continued fraction (modified Lentz).

    Not scipy's ``hyp2f1``: for integer ``c - b`` (an integer alpha, e.g. 3 or 200) it returns NaN or is wrong
    in the fifth digit. With ``F(0, b - 1; c - 1; x) = 1``, Gauss's fraction for ``F(1, b; c; x)`` has
    ``k_{2j+1} = -(e + j)(b + j) / ((e + 2j)(e + 2j + 1))`` and ``k_{2j} = -(c - b + j - 1) j / ((e + 2j - 1)(e + 2j))``
    with ``e = c - 1``, all negative: a Stieltjes fraction, which converges in about ``1.4 / sqrt(1 - x)`` steps.
    Entries not converged after ``max_depth`` steps (a discount rate below ~1e-12) are NaN.
    """
    b, c, x = (np.asarray(v, float).copy() for v in np.broadcast_arrays(b, c, x))
    e = c - 1
    f, lentz_c, lentz_d = np.ones_like(b), np.ones_like(b), np.zeros_like(b)
    active, converged = np.ones(b.shape, bool), np.zeros(b.shape, bool)
    for m in range(1, max_depth + 1):
        i = np.flatnonzero(active)
        if len(i) == 0:
            break
        j = m // 2
        if m % 2:
            k = -(e[i] + j) * (b[i] + j) / ((e[i] + 2 * j) * (e[i] + 2 * j + 1))
        else:
            k = -(c[i] - b[i] + j - 1) * j / ((e[i] + 2 * j - 1) * (e[i] + 2 * j))
        a = k * x[i]
        d_new = 1.0 + a * lentz_d[i]
        c_new = 1.0 + a / lentz_c[i]
        d_new = 1.0 / np.where(d_new == 0, 1e-300, d_new)
        c_new = np.where(c_new == 0, 1e-300, c_new)
        delta = c_new * d_new
        f[i] *= delta
        lentz_c[i], lentz_d[i] = c_new, d_new
        done = np.abs(delta - 1.0) < 1e-15
        converged[i[done]] = True
        active[i[done]] = False
    return np.where(converged, 1.0 / f, np.nan)


def checked_durations(durations, churned, weights=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fit's input as float durations, boolean churn flags and float weights, rows of weight 0 dropped;
    a one-line :class:`CrmvalueError` for anything the sBG cannot use."""
    from crmvalue.features import checked_weights

    t = _as_float(durations, "durations")
    if t.ndim != 1 or len(t) == 0:
        raise CrmvalueError("sBG: durations must be a non-empty one-dimensional sequence")
    bad = np.flatnonzero(~np.isfinite(t) | (t < 1) | (t != np.round(t)))
    if len(bad):
        raise CrmvalueError(f"sBG: durations must be whole numbers of periods >= 1; row {bad[0]} is {t[bad[0]]!r}")
    raw = np.asarray(churned)
    if raw.shape != t.shape:
        raise CrmvalueError(f"sBG: churned has {raw.size} values for {len(t)} durations")
    c = raw if raw.dtype == bool else _as_float(raw, "churned")
    if c.dtype != bool:
        bad = np.flatnonzero(~np.isin(c, (0.0, 1.0)))
        if len(bad):
            raise CrmvalueError(f"sBG: churned must be True/False (or 1/0); row {bad[0]} is {c[bad[0]]!r}")
        c = c == 1.0
    w = np.ones(len(t)) if weights is None else checked_weights(weights, len(t)).astype(float)
    keep = w > 0
    t, c, w = t[keep], c[keep], w[keep]
    if w.sum() <= 0:
        raise CrmvalueError("sBG: every weight is 0, so there is no customer to fit")
    if w[c].sum() <= 0:
        raise CrmvalueError("sBG: no customer churned, so the churn rate cannot be estimated; give cancellations too")
    return t, c, w


def _as_float(values, name: str) -> np.ndarray:
    try:
        return np.asarray(values, float)
    except (TypeError, ValueError):
        raise CrmvalueError(f"sBG: {name} must be numbers, got {np.asarray(values).dtype} values") from None


def survival_counts_to_durations(counts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cohort survival counts ``[n0, ..., nk]`` (active at times 0..k) as (durations, churned, weights) rows:
    ``n_{t-1} - n_t`` churned with duration ``t`` for t = 1..k, and ``nk`` censored at duration ``k``."""
    n = _as_float(counts, "survival counts")
    if n.ndim != 1 or len(n) < 2:
        raise CrmvalueError("sBG: survival counts need at least two values, n0 (the cohort) and n1")
    if not np.all(np.isfinite(n)) or (n < 0).any() or n[0] <= 0:
        raise CrmvalueError("sBG: survival counts must be finite and >= 0, with n0 > 0")
    rises = np.flatnonzero(np.diff(n) > 0)
    if len(rises):
        i = rises[0] + 1
        raise CrmvalueError(f"sBG: survival counts must be non-increasing; n{i} = {n[i]:g} > n{i - 1} = {n[i - 1]:g}")
    k = len(n) - 1
    durations = np.append(np.arange(1, k + 1), k).astype(float)
    churned = np.append(np.ones(k, bool), False)
    return durations, churned, np.append(-np.diff(n), n[-1])


class ShiftedBetaGeometricObjective(NewtonObjective):
    """The sBG's mean negative log-likelihood in ``theta = log(alpha, beta)``, with its gradient and Hessian.

    Per distinct duration ``t``, with churned weight ``c_t``, censored weight ``s_t`` and ``w_t = c_t + s_t``
    (``W`` in all, ``C`` churned), since ``lgG(alpha + 1) - lgG(alpha) = log(alpha)``::

        l = C log(alpha) + sum c_t lgG(beta+t-1) + sum s_t lgG(beta+t) - sum w_t lgG(alpha+beta+t)
            + W (lgG(alpha+beta) - lgG(beta))

    Its derivatives in ``alpha, beta`` take digamma, and the second derivatives trigamma; in log-parameters
    ``g_theta = phi * g_phi`` and ``H_theta = diag(phi) H_phi diag(phi) + diag(phi * g_phi)``.
    """

    def __init__(self, durations, churned, weights):
        t, c, w = (np.asarray(a, float) for a in (durations, churned, weights))
        self.t, codes = np.unique(t, return_inverse=True)
        self.c_t = np.bincount(codes, w * c, len(self.t))
        self.s_t = np.bincount(codes, w * (1 - c), len(self.t))
        self.w_t = self.c_t + self.s_t
        self.W, self.C = float(w.sum()), float(self.c_t.sum())
        self.centre = np.zeros(2)  # alpha = beta = 1: churn probabilities uniform

    def _evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        phi = np.exp(theta)
        a, b = phi
        t, c_t, s_t, w_t, W, C = self.t, self.c_t, self.s_t, self.w_t, self.W, self.C
        ab, b1, b0 = a + b + t, b + t - 1, b + t
        ll = (
            C * np.log(a)
            + c_t @ gammaln(b1)
            + s_t @ gammaln(b0)
            - w_t @ gammaln(ab)
            + W * (gammaln(a + b) - gammaln(b))
        )
        psi_s, tri_s = digamma(a + b), polygamma(1, a + b)
        shared = -w_t @ digamma(ab) + W * psi_s
        shared2 = -w_t @ polygamma(1, ab) + W * tri_s
        grad = np.array([C / a + shared, c_t @ digamma(b1) + s_t @ digamma(b0) + shared - W * digamma(b)])
        h_bb = c_t @ polygamma(1, b1) + s_t @ polygamma(1, b0) + shared2 - W * polygamma(1, b)
        hess = np.array([[-C / a**2 + shared2, shared2], [shared2, h_bb]])
        g_theta = phi * grad
        f = -ll / W
        g = -g_theta / W
        H = -(np.outer(phi, phi) * hess + np.diag(g_theta)) / W
        return float(f), g, H


class ShiftedBetaGeometricModel:
    """The sBG fitted by maximum likelihood (Fader and Hardie 2007), on per-customer durations or cohort counts.

    ``fit`` runs scipy's ``trust-exact`` on :class:`ShiftedBetaGeometricObjective`. When the optimum is at the
    boundary (typically alpha and beta diverging together: every customer churns at the same rate), the fit is
    refitted with each ridge of ``RIDGE_LADDER`` on the log-parameters around alpha = beta = 1, keeping the
    interior fit the data support most; ``boundary_`` and ``warning_`` say so and ``penalizer_used_`` is the ridge.

    Learned state: ``params_`` (:class:`ShiftedBetaGeometricParams`), ``log_likelihood_`` (total, unpenalised),
    ``log_param_covariance_``, ``standard_errors_`` (delta method on the inverse Hessian), ``n_`` (customers).
    """

    def fit(self, durations, churned, weights=None) -> ShiftedBetaGeometricModel:
        """Fit on one row per customer (or rows that each stand for ``weights`` customers).

        ``durations`` are whole periods >= 1; ``churned`` is True when the customer cancelled in period
        ``duration`` (``T = duration``) and False when she is still active after ``duration`` periods
        (censored, ``T > duration``).
        """
        objective = ShiftedBetaGeometricObjective(*checked_durations(durations, churned, weights))
        accepted, reason = fit_with_ridges(
            lambda ridge: _attempt(objective, ridge), objective.W, {("alpha", "beta"): "churn"}
        )
        self.boundary_: str | None = reason
        self.warning_: str | None = None
        if accepted is None:
            raise CrmvalueError(f"sBG did not converge: {reason}, and no ridge gives an interior optimum")
        if reason is not None:
            self.warning_ = (
                f"sBG: boundary estimate ({reason}); refitted with a ridge of {accepted.ridge:g} on the "
                "log-parameters around alpha = beta = 1"
            )
        self.penalizer_used_ = accepted.ridge
        self.params_ = ShiftedBetaGeometricParams(**accepted.values)
        self.log_likelihood_ = accepted.log_likelihood
        assert accepted.covariance is not None  # an accepted attempt is interior, so it has one
        self.log_param_covariance_ = accepted.covariance
        values = np.array([accepted.values[n] for n in _NAMES])
        self.standard_errors_ = pd.Series(values * accepted.log_standard_errors(), index=list(_NAMES), dtype=float)
        self.n_ = objective.W
        return self

    def fit_survival(self, counts) -> ShiftedBetaGeometricModel:
        """Fit on one cohort's survival counts ``[n0, n1, ..., nk]``, the customers active at times 0..k
        (e.g. 1000, 631, 468, ...); see :func:`survival_counts_to_durations`."""
        return self.fit(*survival_counts_to_durations(counts))

    def project_survival(self, periods: int, cohort_size: float | None = None) -> pd.Series:
        """Expected survivors at times 0..``periods`` of a cohort of ``cohort_size`` (default: the fitted
        customers, ``n0`` after :meth:`fit_survival`); index ``t`` is ``cohort_size * S(t)``."""
        size = self.n_ if cohort_size is None else float(cohort_size)
        t = np.arange(int(periods) + 1)
        return pd.Series(size * self.params_.survival(t), index=pd.Index(t, name="period"), name="expected_survivors")


def _attempt(objective: ShiftedBetaGeometricObjective, ridge: float) -> FitAttempt:
    """One trust-exact fit from alpha = beta = 1; any failure of the optimiser is an attempt that did not converge."""
    objective.ridge = ridge
    objective._cache = None
    try:
        solution = solve(objective, np.zeros(2))  # from the centre, alpha = beta = 1
        theta, converged, result_message = solution.theta, solution.converged, solution.message
        covariance = solution.covariance(objective.W)
        if covariance is None:
            covariance = np.full((2, 2), np.nan)
        log_likelihood = -objective._evaluate(theta)[0] * objective.W
    except Exception as exc:  # noqa: BLE001 - a failure inside the optimiser is a fit that did not converge
        return FitAttempt(_NAMES, {}, np.full(2, np.nan), False, np.nan, None, ridge, type(exc).__name__)
    return FitAttempt(
        names=_NAMES,
        values=dict(zip(_NAMES, map(float, np.exp(theta)))),
        offsets=theta - objective.centre,
        converged=converged,
        log_likelihood=float(log_likelihood),
        covariance=covariance,
        ridge=ridge,
        failure="" if converged else result_message,
    )
