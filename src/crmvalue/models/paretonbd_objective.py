"""Maximum-likelihood fit of Pareto/NBD on compressed (x, t_x, T) rows, with an analytic gradient and Hessian.

The individual likelihood (Fader and Hardie, note 009, eq. 18) is written with the dead-before-``T``
part as an integral over the dropout time ``tau`` (``lambda^x mu exp(-(lambda+mu) tau)`` mixed over
both gammas)::

    L = Gamma(r+x) alpha^r beta^s / Gamma(r) [E + s I]
    E = (alpha+T)^-(r+x) (beta+T)^-s
    I = int_{t_x}^{T} f(tau) dtau,    f = (alpha+tau)^-(r+x) (beta+tau)^-(s+1)

(``s I`` is note 009's ``s/(r+s+x) A_0``); :mod:`crmvalue.models.paretonbd_integral` computes ``log I`` and
the moments that give its derivatives, with no derivative of a hypergeometric function with respect to its
parameters.

At scale (a million customers with continuous times are a million distinct rows) the objective works in
chunks of ``CHUNK`` rows. Against the node rule the objective, gradient and Hessian agree to 1e-10 (tests).
A fit on more than ``WARM_START_ROWS`` rows starts where the same fit on a systematic subsample ends, so only
a few evaluations touch every row.

The objective is lifetimes' (the weighted mean negative log-likelihood in scaled time, the
largest ``T`` being 1, plus ``penalizer * sum(params ** 2) / n_rows``), in log-parameters, so a
penalised fit is lifetimes' estimate; without a penalizer it is the maximum-likelihood estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from crmvalue.models.objective import NewtonObjective, solve
from crmvalue.models.paretonbd_integral import (
    CHUNK,
    DENSE,
    Frequency,
    cumulative_moments,
    finish,
    node_chunk,
    second_part,
)


class ParetoNBDObjective(NewtonObjective):
    """lifetimes' Pareto/NBD objective, with its analytic gradient and Hessian, in log-parameters
    ``log(r, alpha, s, beta)`` with alpha and beta in scaled time (the largest ``T`` is 1).

    Rows of a frequency shared by at least ``dense`` rows get their dead-before-T integrals as differences of
    one cumulative sum over the sorted t_x and T of those rows (a few Gauss-Legendre nodes per gap between
    neighbours); the others by the node rule. Value, gradient and Hessian are accumulated over chunks of ``chunk``
    rows, so memory stays bounded however many rows there are.
    """

    def __init__(self, frequency, recency, T, weights, penalizer: float = 0.0, chunk: int = CHUNK, dense: int = DENSE):
        x, t_x, T_, w = (np.asarray(a, float) for a in (frequency, recency, T, weights))
        self.scale = 1.0 / T_.max()
        self.x, self.t_x, self.T, self.w = x, t_x * self.scale, T_ * self.scale, w
        self.W, self.n_rows, self.penalizer = w.sum(), len(w), float(penalizer)
        self.chunk = int(chunk)
        values, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)])
        self.groups, sparse = [], []
        for i, value in enumerate(values):
            rows = order[starts[i] : starts[i + 1]]
            if counts[i] >= dense:
                self.groups.append(Frequency(float(value), rows, self.t_x[rows], self.T[rows]))
            else:
                sparse.append(rows)
        self.sparse = np.concatenate(sparse) if sparse else np.zeros(0, int)

    def dead_moments(self, params):
        """log I and the mean of grad log f of every row at ``params`` (scaled time); the rows integrated by the node
        rule and their second moments; and, per frequency integrated cumulatively, its ``SecondMoments``."""
        r, alpha, s, beta = (float(v) for v in params)
        n = self.n_rows
        log_I, mean = np.empty(n), np.empty((n, 4))
        by_nodes, states = [self.sparse], []
        for group in self.groups:
            state = cumulative_moments(r, alpha, s, beta, group, log_I, mean)
            if state is None:
                by_nodes.append(group.rows)
            else:
                states.append(state)
        rows = np.concatenate(by_nodes)
        second = np.empty((len(rows), 4, 4))
        for lo in range(0, len(rows), self.chunk):
            part = rows[lo : lo + self.chunk]
            log_I[part], mean[part], second[lo : lo + self.chunk] = node_chunk(
                r, alpha, s, beta, self.x[part], self.t_x[part], self.T[part]
            )
        return log_I, mean, rows, second, states

    def _evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        p = np.exp(theta)
        log_I, mean, node_rows, node_second, states = self.dead_moments(p)
        total, g, h = 0.0, np.zeros(4), np.zeros((4, 4))
        wD = np.empty(self.n_rows)
        for lo in range(0, self.n_rows, self.chunk):
            part = slice(lo, lo + self.chunk)
            w = self.w[part]
            ll, grad, hess, rho = finish(p, self.x[part], self.T[part], log_I[part], mean[part], None, w)
            assert hess is not None
            total, g, h = total + np.einsum("n,n->", w, ll), g + np.einsum("n,ni->i", w, grad), h + hess
            wD[part] = w * rho
        r, s = p[0], p[2]
        for lo in range(0, len(node_rows), self.chunk):
            part = node_rows[lo : lo + self.chunk]
            h += second_part(wD[part], r + self.x[part], s + 1.0, node_second[lo : lo + self.chunk])
        for state in states:
            summed = state.summed(wD, log_I)
            h += summed
            h[1, 1] += summed[1, 1] / (r + state.group.x)
            h[3, 3] += summed[3, 3] / (s + 1.0)
        pen = self.penalizer / self.n_rows
        value = -total / self.W + pen * (p @ p)
        gradient = -p * g / self.W + 2 * pen * p * p
        hess = -(np.outer(p, p) * h + np.diag(p * g)) / self.W + np.diag(4 * pen * p * p)
        return float(value), gradient, hess

    def log_likelihood(self, params) -> float:
        """The weighted log-likelihood at ``params`` (scaled time), in chunks of rows."""
        log_I, mean = self.dead_moments(params)[:2]
        total = 0.0
        for lo in range(0, self.n_rows, self.chunk):
            part = slice(lo, lo + self.chunk)
            ll = finish(params, self.x[part], self.T[part], log_I[part], mean[part])[0]
            total += float(np.einsum("n,n->", self.w[part], ll))
        return total

    def values(self, thetas: np.ndarray) -> np.ndarray:
        """The objective at each row of ``thetas`` (no ridge), for finite-difference checks."""
        out = []
        for theta in np.atleast_2d(thetas):
            p = np.exp(theta)
            out.append(-self.log_likelihood(p) / self.W + self.penalizer / self.n_rows * (p @ p))
        return np.array(out)


@dataclass(frozen=True)
class ParetoNBDFit:
    """Result of ``fit_pareto_nbd``: parameters in the data's time unit and the optimiser's diagnostics."""

    params: dict[str, float]
    converged: bool
    message: str
    hessian: np.ndarray  # of the mean objective (penalised, ridge included) in log-parameters, scaled time
    gradient: np.ndarray
    n_evaluations: int
    log_params: np.ndarray  # in scaled time, where the ridge is centred
    n_customers: float
    log_likelihood: float  # total, in the data's time unit, without penalty or ridge


# above this many rows, the fit starts where the same fit on a systematic subsample of about SUBSAMPLE rows ends:
# a few Newton steps on all rows instead of the whole path from ``start`` (the optimum is the same)
WARM_START_ROWS = 200_000
SUBSAMPLE = 50_000


def _subsample_start(objective: ParetoNBDObjective, x0: np.ndarray) -> np.ndarray:
    """The log-parameters (in the full objective's scaled time) fitted on every k-th row, weights scaled up by k."""
    step = int(np.ceil(objective.n_rows / SUBSAMPLE))
    rows = slice(0, None, step)
    w = objective.w[rows]
    sub = ParetoNBDObjective(
        objective.x[rows], objective.t_x[rows], objective.T[rows], w * (objective.W / w.sum()), objective.penalizer
    )
    sub.ridge = objective.ridge
    shift = np.log([1.0, sub.scale, 1.0, sub.scale])  # sub's time unit is the subsample's largest T
    result = minimize(
        sub, x0 + shift, jac=True, hess=sub.hessian, method="trust-exact", options={"gtol": 1e-6, "maxiter": 500}
    )
    theta = result.x - shift
    return theta if np.all(np.isfinite(theta)) and np.isfinite(result.fun) else x0


def fit_pareto_nbd(
    frequency, recency, T, weights, penalizer: float = 0.0, start=None, ridge: float = 0.0
) -> ParetoNBDFit:
    """Minimise the objective by trust-exact (analytic Hessian) from ``start`` (log-parameters in scaled
    time, default 0), then Newton-polish until the gradient stops shrinking (below 1e-10 at a regular optimum)."""
    objective = ParetoNBDObjective(frequency, recency, T, weights, penalizer)
    objective.ridge = float(ridge)
    x0 = np.zeros(4) if start is None else np.asarray(start, float)
    with np.errstate(all="ignore"):
        if objective.n_rows > WARM_START_ROWS:
            x0 = _subsample_start(objective, x0)
    solution = solve(objective, x0)
    theta, value, gradient, hessian = solution.theta, solution.value, solution.gradient, solution.hessian
    with np.errstate(all="ignore"):
        values = np.exp(theta)
        # the value without penalty and ridge is minus the mean log-likelihood (scaled time); in the data's time unit
        # each purchase's rate density gains a factor 1/(largest T)
        mean_ll = -(value - objective.penalizer / objective.n_rows * (values @ values) - ridge * (theta @ theta))
        log_likelihood = mean_ll * objective.W + np.log(objective.scale) * float(objective.w @ objective.x)
        values[[1, 3]] /= objective.scale
    return ParetoNBDFit(
        params=dict(zip(("r", "alpha", "s", "beta"), map(float, values))),
        converged=solution.converged,
        message=solution.message,
        hessian=hessian,
        gradient=gradient,
        n_evaluations=solution.n_evaluations,
        log_params=theta,
        n_customers=float(objective.W),
        log_likelihood=log_likelihood,
    )
