"""The dead-before-``T`` part of the Pareto/NBD likelihood as an integral over the dropout time, and its moments.

With ``f = (alpha+tau)^-(r+x) (beta+tau)^-(s+1)`` and ``I = int_{t_x}^{T} f(tau) dtau``, every parameter enters
``f`` through a power of ``alpha+tau`` or ``beta+tau``, so the derivatives of ``log I`` are moments of
``grad log f = -(log(alpha+tau), (r+x)/(alpha+tau), log(beta+tau), (s+1)/(beta+tau))`` under the density
``f / I`` on ``(t_x, T)``, and its Hessian is their covariance plus the mean of ``hess log f``.

The integral is taken in the variable ``y = 1 - ((alpha+t_x)/(alpha+tau))^(r+s+x)``, in which
``f dtau = (alpha+t_x)^-(r+s+x) / (r+s+x) ((alpha+tau)/(beta+tau))^(s+1) dy``: the steep power of a
heavy buyer is absorbed by the substitution and the remaining factor is bounded and smooth,
with at most an algebraic singularity at ``y = 1``. A tanh-sinh rule (``NODES`` points) integrates
it; the node masses are kept in logs and normalised per row, so nothing overflows for ``x`` in
the thousands. Against the closed form with ``hyp2f1`` the log-likelihood agrees to ~1e-13.

The rows of a frequency shared by at least ``DENSE`` rows share ``f``: their integrals are differences of one
cumulative sum over the sorted t_x and T of those rows, each gap between neighbours by 4-point Gauss-Legendre
(the gaps are short; a long one by the node rule), summed from the right. The second moments are never formed
per row: only their sum weighted by the rows' ``w rho / I`` enters the Hessian, a weighted sum over the
Gauss-Legendre nodes once each gap knows the total weight of the rows that cover it. Used by
:mod:`crmvalue.models.paretonbd_objective`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import digamma, gammaln, log_expit, logsumexp, polygamma

# tanh-sinh rule on (-1, 1): nodes at tanh(pi/2 sinh(j h)); 161 points of step 1/20 reach the double-precision ends
_STEP = 0.05
_J = np.arange(-80, 81) * _STEP
_A = np.pi * np.sinh(_J)  # tanh(a) = 2 expit(2a) - 1: the ends are expit(+-pi sinh(j h))
NODES = len(_J)
# log of each node's distance to the right end of (0, 1) and of its weight on (0, 1) (dy = (1/2) dx)
_LOG_RIGHT = log_expit(-_A)
_LOG_WEIGHT = np.log(_STEP * np.pi * np.cosh(_J)) + log_expit(_A) + log_expit(-_A)


# rows of the node rule per chunk: each rows x NODES array is 26 MB, about a dozen are alive at once
CHUNK = 20_000
# 4-point Gauss-Legendre on (0, 1): on an interval over which f changes little (SHORT below) it is exact to ~1e-16
_GL_NODES, _GL_WEIGHTS = (np.polynomial.legendre.leggauss(4)[0] + 1) / 2, np.polynomial.legendre.leggauss(4)[1] / 2
SHORT = 0.05  # (r+x+2) log((alpha+b)/(alpha+a)) + (s+3) log((beta+b)/(beta+a)) of a "short" interval (a, b)
DENSE = 256  # rows of one frequency from which their integrals are differences of one cumulative sum
_LOG_RANGE = 600.0  # largest log f(first)/f(last) of a frequency's cumulative sum (the moments stay within doubles)


def _node_moments(r, alpha, s, beta, x, t_x, T):
    """log I per row and the first and second moments of grad log f under f/I (rows x 4, rows x 4 x 4), by the
    tanh-sinh rule in ``y``; rows with ``t_x = T`` get ``log I = -inf`` (their moments are unused)."""
    n = len(x)
    log_I, mean, second = np.empty(n), np.empty((n, 4)), np.empty((n, 4, 4))
    for lo in range(0, n, CHUNK):
        part = slice(lo, lo + CHUNK)
        log_I[part], mean[part], second[part] = node_chunk(r, alpha, s, beta, x[part], t_x[part], T[part])
    return log_I, mean, second


def node_chunk(r, alpha, s, beta, x, t_x, T):
    p = r + x
    k = p + s
    q = s + 1.0
    a_t = alpha + t_x
    U = k * np.log1p((T - t_x) / a_t)  # y runs over (0, 1 - exp(-U))
    empty = ~(U > 0)  # t_x = T: no time to die in, I = 0 (the nodes are computed on a dummy interval)
    U = np.where(empty, 1.0, U)
    log_Y = np.log(-np.expm1(-U))
    col = (slice(None), None)
    log_w = np.logaddexp(-U[col], log_Y[col] + _LOG_RIGHT)  # log(1 - y), without cancellation near y = 1
    v = -log_w / k[col]  # log((alpha+tau)/(alpha+t_x)) >= 0
    log_a = np.log(a_t)[col] + v
    direct = np.log((beta + t_x)[col] + a_t[col] * np.expm1(np.minimum(v, 600.0)))
    # alpha, beta: scalars, or one per row (the covariate model's alpha_i, beta_i)
    log_b = np.where(v < 600.0, direct, log_a + np.log1p(np.reshape(beta - alpha, (-1, 1)) * np.exp(-log_a)))
    log_mass = _LOG_WEIGHT + log_Y[col] + q * (log_a - log_b)
    log_sum = logsumexp(log_mass, axis=1)
    log_I = np.where(empty, -np.inf, -k * np.log(a_t) - np.log(k) + log_sum + 0.0)
    prob = np.exp(log_mass - log_sum[col])
    grads = (-log_a, -p[col] * np.exp(-log_a), -log_b, -q * np.exp(-log_b))
    return log_I, *_moments(prob, grads)


def _moments(mass, grads):
    """sum over the nodes of ``mass``, ``mass g_i`` and ``mass g_i g_j`` (rows, rows x 4, rows x 4 x 4)."""
    n = len(mass)
    first, second = np.empty((n, 4)), np.empty((n, 4, 4))
    for i in range(4):
        weighted = mass * grads[i]
        first[:, i] = weighted.sum(axis=1)
        for j in range(i, 4):
            second[:, i, j] = second[:, j, i] = np.einsum("nm,nm->n", weighted, grads[j])
    return first, second


def _gauss_nodes(r, alpha, s, beta, x, left, right, log_ref):
    """4-point Gauss-Legendre in ``tau`` on (left, right) per row (for short intervals only): the masses
    ``f exp(-log_ref) dtau`` (rows x 4) and grad log f at the nodes (rows x 4 nodes x 4)."""
    col = (slice(None), None)
    length = right - left
    tau = left[col] + length[col] * _GL_NODES
    log_a, log_b = np.log(alpha + tau), np.log(beta + tau)
    p, q = r + x, s + 1.0
    mass = np.exp(-p[col] * log_a - q * log_b - log_ref[col]) * (length[col] * _GL_WEIGHTS)
    grads = np.stack([-log_a, -p[col] * np.exp(-log_a), -log_b, -q * np.exp(-log_b)], axis=-1)
    return mass, grads


def _steepness(r, alpha, s, beta, x, left, right):
    """How far f and its derivatives change over (left, right): below SHORT, Gauss-Legendre is exact."""
    return (r + x + 2.0) * np.log1p((right - left) / (alpha + left)) + (s + 3.0) * np.log1p(
        (right - left) / (beta + left)
    )


def _short_moments(r, alpha, s, beta, x, t_x, T):
    """``_node_moments`` for rows whose interval is short (``_steepness`` below SHORT), by Gauss-Legendre."""
    log_ref = -(r + x) * np.log(alpha + t_x) - (s + 1.0) * np.log(beta + t_x)
    mass, grads = _gauss_nodes(r, alpha, s, beta, x, t_x, T, log_ref)
    total = mass.sum(axis=1)
    empty = ~(T > t_x)  # no time to die in: I = 0, and moments of 0 (never used)
    weighted = grads * (mass / np.where(empty, 1.0, total)[:, None])[:, :, None]
    log_I = np.where(empty, -np.inf, np.log(np.where(empty, 1.0, total)) + log_ref)
    return log_I, weighted.sum(axis=1), np.einsum("nmi,nmj->nij", weighted, grads)


class Frequency:
    """The rows of one frequency, sorted breakpoints (their t_x and T) and where each row's ends fall."""

    def __init__(self, x: float, rows: np.ndarray, t_x: np.ndarray, T: np.ndarray):
        self.x, self.rows = x, rows
        self.points = np.unique(np.concatenate([t_x, T]))
        self.lo, self.hi = np.searchsorted(self.points, t_x), np.searchsorted(self.points, T)


@dataclass
class SecondMoments:
    """What the second moments of a frequency's rows are summed from once the rows' weights are known: the
    Gauss-Legendre nodes of its short intervals, the second moments of its long intervals (node rule) and of the
    rows integrated on their own."""

    group: Frequency
    log_ref: float
    short: np.ndarray
    grads: np.ndarray
    mass: np.ndarray
    long: np.ndarray
    long_second: np.ndarray
    own: np.ndarray
    own_second: np.ndarray

    def summed(self, wD: np.ndarray, log_I: np.ndarray) -> np.ndarray:
        """sum over the group's rows of ``wD`` times E[g g^T] under f/I (4 x 4), with ``wD`` and ``log_I`` of all
        rows. A row's integral covers the elementary intervals from its t_x to its T: each interval's second moment
        is weighted by the sum of ``wD / I`` of the rows covering it."""
        g = self.group
        c = wD[g.rows] * np.exp(np.minimum(self.log_ref - log_I[g.rows], 700.0))
        c[self.own] = 0.0
        c[wD[g.rows] == 0] = 0.0
        m = len(g.points)
        cover = np.cumsum(np.bincount(g.lo, c, minlength=m) - np.bincount(g.hi, c, minlength=m))
        nodes = self.grads.reshape(-1, 4)
        weights = (self.mass * cover[self.short][:, None]).reshape(-1)
        total = np.einsum("ki,kj->ij", nodes * weights[:, None], nodes)
        total += np.einsum("k,kij->ij", cover[self.long], self.long_second)
        return total + np.einsum("k,kij->ij", wD[g.rows[self.own]], self.own_second)


def cumulative_moments(r, alpha, s, beta, group: Frequency, log_I, mean) -> SecondMoments | None:
    """Fill the group's rows of ``log_I`` and ``mean`` from one cumulative sum over the group's breakpoints (each
    elementary interval by Gauss-Legendre when short, by the node rule otherwise); rows whose own interval is
    short are integrated directly. None (nothing filled) when f falls too steeply over the group's range."""
    b, x = group.points, group.x
    log_ref = -(r + x) * np.log(alpha + b[-1]) - (s + 1.0) * np.log(beta + b[-1])  # f at the last point: f >= 1
    if (r + x) * np.log((alpha + b[-1]) / (alpha + b[0])) + (s + 1.0) * np.log(
        (beta + b[-1]) / (beta + b[0])
    ) > _LOG_RANGE:
        return None
    left, right = b[:-1], b[1:]
    m = len(left)
    xs = np.full(m, x)
    total, first = np.zeros(m + 1), np.zeros((m + 1, 4))
    steep = _steepness(r, alpha, s, beta, xs, left, right)
    short = np.flatnonzero(steep <= SHORT)
    grads, mass = np.empty((len(short), 4, 4)), np.empty((len(short), 4))
    for start in range(0, len(short), 8 * CHUNK):  # 4 nodes an interval: 8 chunks cost about one of the node rule
        part = short[start : start + 8 * CHUNK]
        block = slice(start, start + len(part))
        mass[block], grads[block] = _gauss_nodes(
            r, alpha, s, beta, xs[part], left[part], right[part], np.full(len(part), log_ref)
        )
        total[part] = mass[block].sum(axis=1)
        first[part] = np.einsum("nm,nmi->ni", mass[block], grads[block])
    long = np.flatnonzero(~(steep <= SHORT))
    long_second = np.zeros((len(long), 4, 4))
    if len(long):
        li, mn, sc = _node_moments(r, alpha, s, beta, xs[long], left[long], right[long])
        J = np.exp(li - log_ref)
        total[long], first[long], long_second = J, J[:, None] * mn, J[:, None, None] * sc
    # from each breakpoint to the last, summed from the right: a difference of two is a row's integral
    total, first = (np.cumsum(a[::-1], axis=0)[::-1] for a in (total, first))
    rows, lo, hi = group.rows, group.lo, group.hi
    integral = total[lo] - total[hi]
    log_I[rows] = np.where(hi > lo, np.log(integral) + log_ref, -np.inf)
    mean[rows] = (first[lo] - first[hi]) / integral[:, None]
    own = np.flatnonzero(_steepness(r, alpha, s, beta, xs[:1], b[lo], b[hi]) <= SHORT)
    own_second = np.zeros((len(own), 4, 4))
    if len(own):
        picked = rows[own]
        log_I[picked], mean[picked], own_second = _short_moments(
            r, alpha, s, beta, np.full(len(own), x), b[lo[own]], b[hi[own]]
        )
    return SecondMoments(group, float(log_ref), short, grads, mass, long, long_second, own, own_second)


def finish(params, x, T, log_I, mean, second=None, w=None):
    """Per-row log-likelihood and gradient in ``(r, alpha, s, beta)`` from the dead-before-T moments; with row
    weights ``w``, also the weighted sum of the rows' Hessians (4 x 4), without the part of the second moments
    when ``second`` is None, and the rows' share ``rho`` of "dropped out before T" (that part's weights are
    ``w rho``)."""
    r, alpha, s, beta = params
    p = r + x
    q = s + 1.0
    log_E = -p * np.log(alpha + T) - s * np.log(beta + T)
    log_D = np.log(s) + log_I
    rho = np.exp(log_D - np.logaddexp(log_E, log_D))  # the share of "dropped out before T"
    # the special functions take few distinct values (x is a whole number): once per value
    values, inverse = np.unique(x, return_inverse=True)
    inverse = inverse.reshape(-1)
    base = (gammaln(r + values) - gammaln(r))[inverse] + r * np.log(alpha) + s * np.log(beta)
    ll = base + np.logaddexp(log_E, log_D)
    g_const = np.empty((len(x), 4))
    g_const[:, 0] = (digamma(r + values) - digamma(r))[inverse] + np.log(alpha)
    g_const[:, 1:] = [r / alpha, np.log(beta), s / beta]
    g_E = np.stack([-np.log(alpha + T), -p / (alpha + T), -np.log(beta + T), -s / (beta + T)], axis=-1)
    mean = np.where(rho[:, None] > 0, mean, 0.0)  # rows with t_x = T: no moments (rho = 0)
    g_D = mean + np.array([0.0, 0.0, 1.0 / s, 0.0])
    g_mix = (1 - rho)[:, None] * g_E + rho[:, None] * g_D
    grad = g_const + g_mix
    if w is None:
        return ll, grad, None, rho
    wE, wD = w * (1 - rho), w * rho

    # einsum, not @: the reductions are too small for BLAS threads, which only spin when the cores are busy
    def outer(weights, a, b):  # sum_n weights_n a_n b_n^T
        return np.einsum("ni,nj->ij", a * weights[:, None], b)

    def dot(a, b):
        return np.einsum("n,n->", a, b)

    h = np.zeros((4, 4))
    h[0, 0] = dot(w, (polygamma(1, r + values) - polygamma(1, r))[inverse])
    h[0, 1] = w.sum() / alpha
    h[1, 1] = -w.sum() * r / alpha**2
    h[2, 3] = w.sum() / beta
    h[3, 3] = -w.sum() * s / beta**2
    h[0, 1] -= dot(wE, 1.0 / (alpha + T))
    h[1, 1] += dot(wE, p / (alpha + T) ** 2)
    h[2, 3] -= dot(wE, 1.0 / (beta + T))
    h[3, 3] += dot(wE, s / (beta + T) ** 2)
    h[2, 2] -= wD.sum() / s**2
    # the mean of hess log f: -E[1/(alpha+tau)] = mean_1 / p, (r+x) E[1/(alpha+tau)^2] = second_11 / p, the same for beta
    h[0, 1] += dot(wD, mean[:, 1] / p)
    h[2, 3] += dot(wD, mean[:, 3] / q)
    h = np.triu(h) + np.triu(h, 1).T
    if second is not None:
        h += second_part(wD, p, q, second)
    # the covariance of grad log f (its second moments: second_part)
    h -= outer(wD, mean, mean)
    h += outer(wE, g_E, g_E) + outer(wD, g_D, g_D) - outer(w, g_mix, g_mix)
    return ll, grad, h, rho


def second_part(wD, p, q, second) -> np.ndarray:
    """The Hessian's terms in the second moments: sum wD E[g g^T], and (r+x) E[1/(alpha+tau)^2] =
    E[g_1^2] / (r+x) and the same for beta in the mean of hess log f."""
    second = np.where(wD[:, None, None] > 0, second, 0.0)  # rows with t_x = T have no moments
    h = np.einsum("n,nk->k", wD, second.reshape(-1, 16)).reshape(4, 4)
    h[1, 1] += np.einsum("n,n->", wD / p, second[:, 1, 1])
    h[3, 3] += np.einsum("n,n->", wD, second[:, 3, 3]) / q
    return h


def row_terms(params, x, t_x, T, hessian: bool = True):
    """Per-row log-likelihood and its gradient in ``(r, alpha, s, beta)`` (by the node rule, in chunks of rows);
    with ``hessian``, also the weighted-sum helper: a function of the row weights returning the summed Hessian."""
    r, alpha, s, beta = (float(v) for v in params)
    x, t_x, T = (np.asarray(a, float) for a in (x, t_x, T))
    log_I, mean, second = _node_moments(r, alpha, s, beta, x, t_x, T)
    ll, grad = finish((r, alpha, s, beta), x, T, log_I, mean)[:2]
    if not hessian:
        return ll, grad, None

    def summed_hessian(w: np.ndarray) -> np.ndarray:
        h = finish((r, alpha, s, beta), x, T, log_I, mean, second, np.asarray(w, float))[2]
        assert h is not None
        return h

    return ll, grad, summed_hessian
