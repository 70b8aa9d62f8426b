"""The shell both analytic-Hessian fits share: objective, gradient and Hessian computed together once per point,
guarded so that no non-finite number ever reaches scipy's linear algebra, with an optional ridge on the
log-parameters for boundary fits, and the one rule that says whether a fit is an interior optimum."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

# |log-parameter - centre| beyond which a point is refused without evaluating it: exp(30) ~ 1e13
GUARD_BOX = 30.0


class NewtonObjective:
    """Subclasses implement ``_evaluate(theta) -> (value, gradient, Hessian)``; scipy's ``minimize(objective,
    jac=True, hess=objective.hessian, method="trust-exact")`` then asks for them at the same point twice, and the
    second call is served from memory.

    A point outside the guard box around ``centre``, or one where the value, gradient or Hessian is
    not finite, gets the value ``+inf``, a zero gradient and an identity Hessian. ``trust-exact``
    then computes ``rho = -inf``, shrinks its radius and rejects the step; it never factorises a
    non-finite Hessian (its ``IterativeSubproblem`` takes norms of the Hessian at every proposed
    point, which raised ``array must not contain infs or NaNs`` on some CPUs and not on others).

    ``ridge`` adds ``ridge * sum((theta - centre) ** 2)``: the fallback penalty of boundary fits,
    which keeps the log-parameters from running off towards 0 or infinity.
    """

    _cache: tuple[bytes, tuple] | None = None
    ridge: float = 0.0
    centre: np.ndarray | float = 0.0

    def __call__(self, log_params: np.ndarray) -> tuple[float, np.ndarray]:
        """Objective and gradient at ``log_params``."""
        value, gradient, _ = self.evaluate(log_params)
        return value, gradient

    def hessian(self, log_params: np.ndarray) -> np.ndarray:
        return self.evaluate(log_params)[2]

    def evaluate(self, log_params: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Objective, gradient and Hessian at ``log_params``, remembered for the next call at the same point."""
        theta = np.asarray(log_params, float)
        if self._cache is None or self._cache[0] != theta.tobytes():
            self._cache = (theta.tobytes(), self._guarded(theta))
        return self._cache[1]

    def _guarded(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        refused = (np.inf, np.zeros(len(theta)), np.eye(len(theta)))
        offset = theta - self.centre
        if not np.all(np.isfinite(theta)) or np.max(np.abs(offset)) > GUARD_BOX:
            return refused
        try:
            with np.errstate(all="ignore"):
                value, gradient, hessian = self._evaluate(theta)
        except (ArithmeticError, ValueError):
            return refused
        if not (np.isfinite(value) and np.all(np.isfinite(gradient)) and np.all(np.isfinite(hessian))):
            return refused
        if self.ridge:
            value = value + self.ridge * float(offset @ offset)
            gradient = gradient + 2 * self.ridge * offset
            hessian = hessian + 2 * self.ridge * np.eye(len(theta))
        return float(value), gradient, hessian

    def _evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        raise NotImplementedError


def newton_polish(objective: NewtonObjective, theta: np.ndarray, gtol: float = 1e-10, steps: int = 20) -> np.ndarray:
    """Plain Newton steps from where ``trust-exact`` stopped, while they shrink the gradient.

    Near a boundary the objective is a difference of large terms, so its value carries rounding
    noise that makes ``trust-exact`` reject the last steps (it compares values) and stop at a
    gradient of 1e-8..1e-7, wherever its last bits took it. The gradient is far less noisy: Newton
    steps on it end at the same point whatever the start, which is what makes the estimate
    reproducible to many digits. At a regular optimum the gradient is below ``gtol`` already.
    """
    theta = np.asarray(theta, float)
    for _ in range(steps):
        value, gradient, hessian = objective.evaluate(theta)
        size = np.max(np.abs(gradient))
        if not np.isfinite(value) or size < gtol:
            break
        try:
            factor = np.linalg.cholesky(hessian)
        except np.linalg.LinAlgError:
            break
        step = np.linalg.solve(factor.T, np.linalg.solve(factor, gradient))
        proposal = theta - step
        new_value, new_gradient, _ = objective.evaluate(proposal)
        if not (np.isfinite(new_value) and np.max(np.abs(new_gradient)) < size):
            break
        theta = proposal
    return theta


@dataclass(frozen=True)
class Solution:
    """Where :func:`solve` stopped: the point, the objective there, and whether it converged."""

    theta: np.ndarray
    value: float
    gradient: np.ndarray
    hessian: np.ndarray
    converged: bool
    message: str
    n_evaluations: int = 0

    def covariance(self, n: float) -> np.ndarray | None:
        """The inverse Hessian over ``n`` (the number of customers): the log-parameters' covariance; None if singular."""
        if not np.all(np.isfinite(self.hessian)):
            return None
        try:
            return np.linalg.inv(self.hessian) / n
        except np.linalg.LinAlgError:
            return None


def solve(
    objective: NewtonObjective, start: np.ndarray, gtol: float = 1e-10, converged_below: float = 1e-7
) -> Solution:
    """``trust-exact`` from ``start`` with the objective's gradient and Hessian, then :func:`newton_polish`.

    Converged: scipy says so, or the largest gradient component is below ``converged_below``, at a finite value.
    Warnings and floating-point errors inside the optimiser are silenced (the guard refuses bad points);
    an exception from it propagates, for the caller to count as an attempt that did not converge.
    """
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = minimize(
            objective,
            np.asarray(start, float),
            jac=True,
            hess=objective.hessian,
            method="trust-exact",
            options={"gtol": gtol, "maxiter": 500},
        )
        theta = newton_polish(objective, result.x)
        value, gradient, hessian = objective.evaluate(theta)
    converged = bool((result.success or np.abs(gradient).max() < converged_below) and np.isfinite(value))
    return Solution(theta, value, gradient, hessian, converged, str(result.message), int(result.nfev))


# --- the boundary rule shared by every fit (purchase models and Gamma-Gamma) ---------------------------

# an optimum is interior only if every parameter lies in [1/PARAMETER_BOUND, PARAMETER_BOUND] in the fit's
# scaled units (time in units of the longest T; Gamma-Gamma's v in units of the mean spend) ...
PARAMETER_BOUND = 1e6
# ... and no log-parameter has a standard error above MAX_LOG_SE (a factor e^4.5 ~ 90; CDNOW's are 0.05-0.5).
# Not 5: in a direction the data say nothing about, the ridge alone gives a standard error of 1/sqrt(2 lambda n),
# which is exactly 5 for lambda n = 0.02 (20 customers and a ridge of 1e-3), so the outcome would be a coin toss
# of the last bit; 1/(2 * 4.5^2) = 0.02469... is no decade multiple of a whole number of customers.
MAX_LOG_SE = 4.5
# a boundary fit is refitted with each of these ridges on the log-parameters; of those that give an interior optimum,
# the one with the highest marginal likelihood is kept (``best_rung``)
RIDGE_LADDER = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
# in a boundary's description, a parameter runs off if, at the first ridge fit that converged, its log has a
# standard error above DIRECTION_LOG_SE or it lies outside [1e-3, 1e3] in scaled units
DIRECTION_LOG_SE = 1.1  # not 1, for the reason given for MAX_LOG_SE: 1/(2 * 1.1^2) = 0.41322...
DIRECTION_LOG_OFFSET = float(np.log(1e3))


@dataclass(frozen=True)
class FitAttempt:
    """One optimisation: where it stopped and what the boundary rule needs to judge it.

    ``offsets`` are the log-parameters minus the fit's centre (0 in scaled units); ``covariance``
    is the asymptotic covariance of the log-parameters (inverse Hessian of the penalised objective,
    ridge included, over the number of customers), ``None`` when it could not be computed.
    """

    names: tuple[str, ...]
    values: dict[str, float]
    offsets: np.ndarray
    converged: bool
    log_likelihood: float
    covariance: np.ndarray | None
    ridge: float = 0.0
    failure: str = ""  # why the optimiser stopped, when it did not converge
    free: tuple[bool, ...] | None = None  # False for a parameter held fixed (Gamma-Gamma's q at its floor)
    penalty: float = 0.0  # the user's (lifetimes') penalty at the estimate, in log-likelihood units

    def log_standard_errors(self) -> np.ndarray:
        assert self.covariance is not None, "only an attempt with a covariance has standard errors"
        return np.sqrt(np.maximum(np.diag(self.covariance), 0.0))


def not_interior(attempt: FitAttempt, predictions_finite: bool = True) -> str | None:
    """``None`` for an interior optimum, otherwise why not (the boundary rule, in order)."""
    if not attempt.converged:
        return f"the optimiser did not converge{': ' + attempt.failure if attempt.failure else ''}"
    if not np.all(np.isfinite(attempt.offsets)) or not np.isfinite(attempt.log_likelihood):
        return "the estimate is not finite"
    outside = [n for n, o in zip(attempt.names, attempt.offsets) if abs(o) > np.log(PARAMETER_BOUND)]
    if outside:
        return f"{' and '.join(outside)} outside [1e-6, 1e6] in scaled units"
    free = np.array(attempt.free if attempt.free is not None else [True] * len(attempt.names))
    cov = attempt.covariance
    if cov is None or not np.all(np.isfinite(cov)):
        return "the Hessian is singular"
    sub = cov[np.ix_(free, free)]
    if np.linalg.eigvalsh((sub + sub.T) / 2).min() <= 0:
        return "the Hessian is not positive definite (not a maximum)"
    se = attempt.log_standard_errors()
    flat = [n for n, s, f in zip(attempt.names, se, free) if f and s > MAX_LOG_SE]
    if flat:
        return f"the likelihood is flat in {' and '.join(flat)} (standard error of the log above {MAX_LOG_SE:g})"
    if not predictions_finite:
        return "a prediction is not finite"
    return None


def log_evidence(attempt: FitAttempt, n: float) -> float:
    """Laplace approximation of the log marginal likelihood of a ridge fit, up to a constant shared by the rungs.

    The ridge ``lambda * sum(offset ** 2)`` on the mean objective is a Gaussian prior
    ``N(centre, I / (2 lambda n))`` on the log-parameters; the evidence
    ``l(theta) - lambda n |offset|^2 + k/2 log(2 lambda n) + 1/2 log det(covariance)`` weighs the fit
    against the prior's strength, so it is highest for the ridge the data support.
    """
    free = np.array(attempt.free if attempt.free is not None else [True] * len(attempt.names))
    offsets = attempt.offsets[free]
    if attempt.covariance is None:
        return -np.inf
    sign, log_det = np.linalg.slogdet(attempt.covariance[np.ix_(free, free)])
    if sign <= 0 or attempt.ridge <= 0:
        return -np.inf
    return float(
        attempt.log_likelihood
        - attempt.penalty
        - attempt.ridge * n * (offsets @ offsets)
        + free.sum() / 2 * np.log(2 * attempt.ridge * n)
        + log_det / 2
    )


def best_rung(attempts: list[FitAttempt], n: float) -> FitAttempt | None:
    """Among ridge fits with an interior optimum, the one with the highest evidence (``log_evidence``)."""
    return max(attempts, key=lambda a: log_evidence(a, n)) if attempts else None


def describe_boundary(attempts: list[FitAttempt], pairs: dict[tuple[str, str], str]) -> str:
    """A short reason for a boundary fit: which parameters run off, read where it is reproducible.

    The unpenalised optimiser stops wherever its last bits take it on the way to the boundary,
    so the direction is read from the first ridge fit that converged (a unique optimum): the
    parameters whose log has a standard error above ``DIRECTION_LOG_SE`` there (or lie outside
    [1e-3, 1e3] in scaled units) run off in the direction of their offset from the centre, or are not identified
    when they stay within a factor e of it. ``pairs`` maps two parameters that diverge together
    to what they measure, e.g. ``("a", "b") -> "dropout"``.
    """
    ridged = [
        a
        for a in attempts
        if a.ridge > 0
        and a.converged
        and np.all(np.isfinite(a.offsets))
        and a.covariance is not None
        and np.all(np.isfinite(a.covariance))
    ]
    if not ridged:
        return not_interior(attempts[0]) or "the optimum is at the boundary"
    source = ridged[0]
    se = source.log_standard_errors()
    free = source.free if source.free is not None else (True,) * len(source.names)
    loose = [
        (n, o)
        for n, o, s, f in zip(source.names, source.offsets, se, free)
        if f and (s > DIRECTION_LOG_SE or abs(o) > DIRECTION_LOG_OFFSET)
    ]
    up = [n for n, o in loose if o >= 1]
    down = [n for n, o in loose if o <= -1]
    flat = [n for n, o in loose if abs(o) < 1]
    parts = []
    for (first, second), measure in pairs.items():
        if first in up and second in up:
            parts.append(f"{first} and {second} diverge together (no {measure} heterogeneity)")
            up = [n for n in up if n not in (first, second)]
        elif first in down and second in down:
            parts.append(f"{first} and {second} go to 0 together")
            down = [n for n in down if n not in (first, second)]
    parts += [f"{n} -> infinity" for n in up] + [f"{n} -> 0" for n in down]
    if flat:
        parts.append(f"{', '.join(flat)} not identified (flat likelihood)")
    if not parts:
        return not_interior(attempts[0]) or "the optimum is at the boundary"
    return "; ".join(parts)


def fit_with_ridges(
    attempt: Callable[[float], FitAttempt], n: float, pairs: dict[tuple[str, str], str]
) -> tuple[FitAttempt | None, str | None]:
    """The boundary rule around one model's ``attempt(ridge)``: the unpenalised fit and no reason when its
    optimum is interior; otherwise the ridge fit the data support most (``best_rung``; None when no rung is
    interior) and why the unpenalised one is a boundary (``describe_boundary``)."""
    first = attempt(0.0)
    if not_interior(first) is None:
        return first, None
    attempts = [first, *(attempt(ridge) for ridge in RIDGE_LADDER)]
    accepted = best_rung([a for a in attempts[1:] if not_interior(a) is None], n)
    return accepted, describe_boundary(attempts, pairs)
