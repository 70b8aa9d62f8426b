"""Customer covariates for the models with time-invariant covariates: the design matrix, and the machinery
those models share (checked inputs, compressed rows, the objective's chain rule, the estimator).

Design matrix. Numeric columns are used as they are. Categorical columns (object, string, category or bool)
are coded with one 0/1 indicator per level except the reference level, the first in sorted
order, so each coefficient is the effect of a level relative to the reference; an indicator is
named ``column[level]``. There is no intercept column: the model's own parameters play that part,
which is why a column that does not vary (a category with one level included) is refused.

Models. Each customer's four local log-parameters ``eta_i`` (``log r, log alpha_i, ...``) are the
reference customer's plus ``+-gamma_purchase . z_p,i`` or ``+-gamma_dropout . z_d,i`` on some of them,
so they are *linear* in ``beta = (log-parameters, gamma_purchase, gamma_dropout)``: ``eta_i = J_i beta``.
The gradient of the log-likelihood is then ``sum_i w_i J_i' g_i`` and its Hessian ``sum_i w_i J_i' H_i J_i``
exactly, where ``g_i`` and ``H_i`` are the derivatives of the plain model's per-customer log-likelihood in
``eta_i``: a model supplies only those (:meth:`CovariateObjective.row_terms`), in its natural parameters.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from crmvalue.errors import CrmvalueError
from crmvalue.features import checked_weights
from crmvalue.models.objective import NewtonObjective, newton_polish, solve

# a categorical covariate's levels at most: each is two coefficients of a dense Newton fit (the run time grows with
# their square), and hundreds of levels are ids or numbers written as text ("1.234,5") more often than categories
MAX_LEVELS = 50
FEW_LEVELS = 10  # more levels than this, held by under two customers each, are ids or numbers rather than categories


def design_matrix(table: pd.DataFrame, columns: list[str], source: str) -> tuple[np.ndarray, list[str]]:
    """The covariates ``columns`` of ``table`` (one row per customer, customer id as index) as an
    ``n x k`` float matrix and its column names.

    Raises a one-line :class:`CrmvalueError` naming ``source`` (where the table came from), the
    column and, for a missing value, the first customer with one; for an absent column (listing the
    columns there are); for a column that does not vary; and for columns that are linearly
    dependent together with the intercept (e.g. indicators of every level of one variable given
    as separate numeric columns).
    """
    missing = [c for c in columns if c not in table.columns]
    if missing:
        available = ", ".join(map(str, table.columns)) or "none"
        raise CrmvalueError(f"{source}: no covariate column {missing[0]!r}; the columns are: {available}")
    blocks: list[np.ndarray] = []
    names: list[str] = []
    for column in columns:
        values = table[column]
        if isinstance(values, pd.DataFrame):
            raise CrmvalueError(f"{source}: the covariate column {column!r} appears more than once")
        block, labels = _code_column(values, column, source)
        blocks.append(block)
        names += labels
    matrix = np.column_stack(blocks) if blocks else np.zeros((len(table), 0))
    if matrix.shape[1] and len(matrix) > matrix.shape[1]:
        centred = matrix - matrix.mean(axis=0)
        if np.linalg.matrix_rank(centred) < matrix.shape[1]:
            raise CrmvalueError(
                f"{source}: the covariates {', '.join(names)} are linearly dependent (with the intercept), "
                "so their effects are not identified; drop one of them"
            )
    return matrix, names


def _code_column(values: pd.Series, column: str, source: str) -> tuple[np.ndarray, list[str]]:
    """One column as its numeric block and names, after the checks every column gets."""
    bad = values.isna().to_numpy()
    if bad.any():
        first = values.index[int(np.argmax(bad))]
        raise CrmvalueError(
            f"{source}: covariate {column!r} is missing for customer {first!r} ({int(bad.sum())} rows in all); "
            "fill it in or drop those customers"
        )
    dtype = values.dtype
    categorical = (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )
    if categorical:
        observed = pd.unique(values.to_numpy(object))
        try:
            levels = sorted(observed)
        except TypeError:  # mixed types: compare as text
            levels = sorted(observed, key=str)
        if len(levels) < 2:
            only = repr(levels[0]) if levels else "none"
            raise CrmvalueError(
                f"{source}: covariate {column!r} has a single level ({only}), so its effect is not "
                "identified beside the model's own parameters; drop it"
            )
        if len(levels) > MAX_LEVELS or (len(levels) > FEW_LEVELS and 2 * len(levels) > len(values)):
            raise CrmvalueError(
                f"{source}: covariate {column!r} has {len(levels):,} levels among {len(values):,} customers (e.g. "
                f"{levels[0]!r}), too many effects to estimate (at most {MAX_LEVELS}, and beyond {FEW_LEVELS} "
                "at least two customers a level); group its levels, or if it holds numbers written as text, "
                "write them as plain numbers"
            )
        data = values.to_numpy(object)
        block = np.column_stack([data == level for level in levels[1:]]).astype(float)
        return block, [f"{column}[{level}]" for level in levels[1:]]
    if not pd.api.types.is_numeric_dtype(dtype):
        raise CrmvalueError(f"{source}: covariate {column!r} is of type {dtype}, neither numeric nor categorical")
    numbers = values.to_numpy(float)
    infinite = ~np.isfinite(numbers)
    if infinite.any():
        first = values.index[int(np.argmax(infinite))]
        raise CrmvalueError(f"{source}: covariate {column!r} is not finite for customer {first!r}")
    if len(numbers) == 0 or numbers.min() == numbers.max():
        raise CrmvalueError(
            f"{source}: covariate {column!r} does not vary, so its effect is not identified beside the "
            "model's own parameters; drop it"
        )
    return numbers[:, None], [column]


# --- the machinery the covariate models share ----------------------------------------------------


def covariate_matrix(z, n: int, role: str, fitting: bool = False) -> tuple[np.ndarray, list[str]]:
    """``z`` (None, a 1-D array, an n x k array or a DataFrame) as an n x k float matrix and names; for
    ``fitting``, a column that does not vary is refused (it is not identified beside the intercept)."""
    if z is None:
        return np.zeros((n, 0)), []
    names = [str(c) for c in z.columns] if isinstance(z, pd.DataFrame) else None
    try:
        matrix = np.asarray(z, float)
    except (TypeError, ValueError):
        raise CrmvalueError(f"z_{role}: covariates must be numbers (code categories with design_matrix)") from None
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2 or matrix.shape[0] != n:
        raise CrmvalueError(f"z_{role}: expected {n} rows of covariates (n x k), got shape {matrix.shape}")
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        raise CrmvalueError(f"z_{role}: covariates missing or not finite in row {first} ({int(bad.sum())} rows in all)")
    names = names or [f"{role}_{j + 1}" for j in range(matrix.shape[1])]
    flat = [name for name, column in zip(names, matrix.T) if fitting and n and column.min() == column.max()]
    if flat:
        raise CrmvalueError(f"z_{role}: covariate {flat[0]} does not vary, so its effect is not identified")
    return matrix, names


def magnitudes(z: np.ndarray) -> np.ndarray:
    """Per column of ``z`` (n x k) the power of two nearest its largest absolute value when that lies outside
    ``[1e-2, 1e2]``, else 1: the divisor that gives the fit columns of moderate size. A power of two divides
    exactly, so a column already of moderate size is fitted bit for bit as before."""
    largest = np.max(np.abs(z), axis=0) if len(z) else np.ones(z.shape[1])
    moderate = (largest >= 1e-2) & (largest <= 1e2) | (largest == 0)
    with np.errstate(divide="ignore"):
        power = np.exp2(np.round(np.log2(np.where(moderate, 1.0, largest))))
    return np.where(moderate, 1.0, power)


def checked_history(frequency, recency, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, t_x, T)`` as float arrays of one length, with ``x >= 0``, ``0 <= t_x <= T`` and ``T >= 0``; ``T = 0``
    (a customer first seen on the last day, as the plain models allow) only with ``x = 0``."""
    x, t_x, T_ = (np.asarray(v, float).reshape(-1) for v in (frequency, recency, T))
    if not len(x) == len(t_x) == len(T_):
        raise CrmvalueError(f"frequency, recency and T have {len(x)}, {len(t_x)} and {len(T_)} values")
    if not (np.isfinite(x).all() and np.isfinite(t_x).all() and np.isfinite(T_).all()):
        raise CrmvalueError("frequency, recency and T must be finite numbers")
    if (x < 0).any() or (t_x < 0).any() or (t_x > T_).any() or ((T_ <= 0) & (x > 0)).any():
        raise CrmvalueError(
            "need frequency >= 0, 0 <= recency <= T and T > 0 for every customer with a repeat purchase"
        )
    return x, t_x, T_


def compress_rows(x, t_x, T, zp, zd, weights) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``[x, t_x, T, z_p, z_d]`` (in order of first appearance) and the total weight of each."""
    table = np.column_stack([x, t_x, T, zp, zd])
    codes, bound = np.zeros(len(table), np.int64), 1
    for column in table.T:  # hash column by column, folding the codes so far into one (no sort of the rows)
        values, distinct = pd.factorize(column)
        if bound * len(distinct) >= 2**62:  # renumber before the combined code could overflow
            codes, uniques = pd.factorize(codes)
            bound = len(uniques)
        codes, bound = codes * len(distinct) + values, bound * len(distinct)
    codes = pd.factorize(codes)[0]
    first = np.unique(codes, return_index=True)[1]
    return table[first], np.bincount(codes, weights=weights, minlength=len(first))


class CovariateObjective(NewtonObjective):
    """Mean negative log-likelihood (plus penalty) of a model with covariates, its gradient and Hessian in ``beta``.

    ``frequency, recency, T, weights`` are one value per row, ``z_purchase`` (n x k_p) and ``z_dropout``
    (n x k_d) the rows' covariates. Time is scaled so that the longest ``T`` is 1 (or by ``scale``).
    ``purchase_signs`` and ``dropout_signs`` map a local log-parameter's index to the sign with which
    ``gamma . z`` enters it; ``time_scaled`` are the indices of the time-scale parameters. Subclasses
    implement :meth:`row_terms`. ``penalizer`` is lifetimes' L2 penalty on the four parameters in scaled
    time plus the same penalty on the coefficients (mean objective).
    """

    purchase_signs: ClassVar[dict[int, float]] = {1: -1.0}
    dropout_signs: ClassVar[dict[int, float]] = {2: 1.0, 3: 1.0}
    time_scaled: ClassVar[tuple[int, ...]] = (1,)
    chunk: ClassVar[int] = 100_000  # rows per block: bounds the memory of the per-row Hessians
    # a fit on more rows than this starts where the same fit on a systematic subsample of about this many ends
    warm_start_rows: ClassVar[int] = 200_000
    subsample: ClassVar[int] = 50_000

    def __init__(self, frequency, recency, T, weights, z_purchase, z_dropout, penalizer: float = 0.0, scale=None):
        self.x = np.asarray(frequency, float)
        self.scale = 1.0 / float(np.max(T)) if scale is None else float(scale)
        self.t_x = np.asarray(recency, float) * self.scale
        self.T = np.asarray(T, float) * self.scale
        self.w = np.asarray(weights, float)
        self.zp = np.asarray(z_purchase, float).reshape(len(self.x), -1)
        self.zd = np.asarray(z_dropout, float).reshape(len(self.x), -1)
        self.kp, self.kd = self.zp.shape[1], self.zd.shape[1]
        self.n_params = 4 + self.kp + self.kd
        self.penalizer = float(penalizer)
        self.n = float(self.w.sum())
        self.sum_wx = float(self.w @ self.x)
        codes, distinct = pd.factorize(self.x)  # the special functions of r + x: once per distinct x
        self.x_codes, self.distinct_x = codes, np.asarray(distinct, float)

    def blocks(self) -> list[slice]:
        return [slice(lo, lo + self.chunk) for lo in range(0, len(self.x), self.chunk)]

    def directions(self) -> tuple[np.ndarray, np.ndarray]:
        """``c_p, c_d`` (4 each): ``J_i = [I_4 | c_p z_p,i' | c_d z_d,i']``, the signs with which the covariates
        enter each local log-parameter."""
        c_p, c_d = np.zeros(4), np.zeros(4)
        c_p[list(self.purchase_signs)] = list(self.purchase_signs.values())
        c_d[list(self.dropout_signs)] = list(self.dropout_signs.values())
        return c_p, c_d

    def local(self, theta: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
        """The rows' four parameters (time-scale ones in scaled time), m x 4: ``exp(J_i beta)``."""
        c_p, c_d = self.directions()
        purchase = self.zp[rows] @ theta[4 : 4 + self.kp]
        dropout = self.zd[rows] @ theta[4 + self.kp :]
        return np.exp(theta[:4] + purchase[:, None] * c_p + dropout[:, None] * c_d)

    def row_terms(self, p: np.ndarray, rows: slice, derivatives: bool):
        """Per-row log-likelihood (scaled time) at the rows' parameters ``p`` (m x 4) and, with ``derivatives``,
        its gradient (m x 4) and Hessian (m x 4 x 4) in those parameters."""
        raise NotImplementedError

    def per_row(self, theta: np.ndarray, rows: slice = slice(None), derivatives: bool = True):
        """Per-row log-likelihood and, with ``derivatives``, its gradient and Hessian in ``eta_i``."""
        p = self.local(theta, rows)
        if not derivatives:
            return self.row_terms(p, rows, False)
        ll, grad, H = self.row_terms(p, rows, True)
        # to log-parameters: d/deta_j = p_j d/dp_j
        H_eta = p[:, :, None] * H * p[:, None, :]
        H_eta[:, np.arange(4), np.arange(4)] += p * grad
        return ll, p * grad, H_eta

    def _evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        P = self.n_params
        total, gradient, hessian = 0.0, np.zeros(P), np.zeros((P, P))
        c_p, c_d = self.directions()
        base, purchase, dropout = slice(0, 4), slice(4, 4 + self.kp), slice(4 + self.kp, P)
        for rows in self.blocks():
            ll, g_eta, H_eta = self.per_row(theta, rows)
            w, zp, zd = self.w[rows], self.zp[rows], self.zd[rows]
            total += float(w @ ll)
            # J_i' g_i and J_i' H_i J_i block by block (J_i = [I | c_p z_p' | c_d z_d']), never forming J_i
            gradient[base] += w @ g_eta
            gradient[purchase] += zp.T @ (w * (g_eta @ c_p))
            gradient[dropout] += zd.T @ (w * (g_eta @ c_d))
            hessian[base, base] += (w @ H_eta.reshape(-1, 16)).reshape(4, 4)
            # H_i c (m x 4), from the few columns c is not 0 in, weighted
            Hp, Hd = (w[:, None] * sum(c[j] * H_eta[:, :, j] for j in np.flatnonzero(c)) for c in (c_p, c_d))
            hessian[base, purchase] += Hp.T @ zp
            hessian[base, dropout] += Hd.T @ zd
            hessian[purchase, purchase] += zp.T @ (zp * (Hp @ c_p)[:, None])
            hessian[purchase, dropout] += zp.T @ (zd * (Hd @ c_p)[:, None])
            hessian[dropout, dropout] += zd.T @ (zd * (Hd @ c_d)[:, None])
        hessian = np.triu(hessian) + np.triu(hessian, 1).T
        values = np.concatenate([np.exp(theta[:4]), theta[4:]])
        slope = np.concatenate([values[:4] ** 2, theta[4:]]) * 2  # d(values^2)/dtheta
        curve = np.concatenate([4 * values[:4] ** 2, np.full(P - 4, 2.0)])
        pen = self.penalizer
        value = -total / self.n + self.penalty(theta)
        return value, -gradient / self.n + pen * slope, -hessian / self.n + pen * np.diag(curve)

    def penalty(self, theta: np.ndarray) -> float:
        """``penalizer`` times the sum of squares of the four parameters (scaled time) and the coefficients."""
        values = np.concatenate([np.exp(theta[:4]), theta[4:]])
        return self.penalizer * float(values @ values)

    def log_likelihood(self, theta: np.ndarray) -> float:
        """Total log-likelihood in the data's own time unit (no penalty)."""
        theta = np.asarray(theta, float)
        with np.errstate(all="ignore"):
            total = sum(float(self.w[rows] @ self.per_row(theta, rows, derivatives=False)) for rows in self.blocks())
        # in scaled time each customer's log-likelihood is lower by x log(scale)
        return total + self.sum_wx * float(np.log(self.scale))


class CovariateModel:
    """A plain purchase model with time-invariant covariates (see the module docstring and the subclasses).

    After ``fit``: ``params_`` (the plain model's parameters of the reference customer, z = 0, in the data's
    time unit), ``gamma_purchase_``, ``gamma_dropout_``, ``coefficient_names_`` (``{"purchase": [...],
    "dropout": [...]}``, a DataFrame's columns or ``purchase_1, ...``), ``log_likelihood_``,
    ``standard_errors_`` (a Series over the four parameters, ``purchase:<name>...``, ``dropout:<name>...``),
    ``covariance_`` (of ``beta``), ``n_customers_``, ``n_patterns_``. A covariate column whose largest absolute
    value lies outside ``[1e-2, 1e2]`` is fitted divided by a power of two near it (:func:`magnitudes`), so
    ``penalizer`` acts on its coefficient in those units. Customers with ``T = 0`` add nothing to the likelihood.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    params_class: ClassVar[Any]
    objective_class: ClassVar[type[CovariateObjective]]

    def __init__(self, penalizer: float = 0.0):
        self.penalizer = penalizer

    def plain_start(self, x, t_x, T, w) -> np.ndarray:
        """The plain model's log-parameters fitted on the rows, in scaled time (the longest ``T`` is 1)."""
        raise NotImplementedError

    def fit(self, frequency, recency, T, z_purchase=None, z_dropout=None, weights=None, compress: bool = True):
        x, t_x, T_ = checked_history(frequency, recency, T)
        n = len(x)
        if n == 0:
            raise CrmvalueError(f"{self.label}: no customers to fit")
        zp, names_p = covariate_matrix(z_purchase, n, "purchase", fitting=True)
        zd, names_d = covariate_matrix(z_dropout, n, "dropout", fitting=True)
        # fitted on columns of moderate magnitude (amounts in 1e9, shares in 1e-9), the coefficients scaled back
        sizes = np.concatenate([np.ones(4), magnitudes(zp), magnitudes(zd)])
        zp, zd = zp / sizes[4 : 4 + zp.shape[1]], zd / sizes[4 + zp.shape[1] :]
        w = np.ones(n) if weights is None else checked_weights(np.asarray(weights).reshape(-1), n).astype(float)
        # a customer observed for no time (T = 0, so x = t_x = 0) has likelihood 1 under any parameters: no information
        w = np.where(T_ > 0, w, 0.0)
        if compress:
            rows, w = compress_rows(x, t_x, T_, zp, zd, w)
        else:
            rows = np.column_stack([x, t_x, T_, zp, zd])
        rows, w = rows[w > 0], w[w > 0]
        if len(w) == 0:
            raise CrmvalueError(
                f"{self.label}: no customers to fit (every weight is 0, or no customer observed for any time)"
            )
        kp = zp.shape[1]
        columns = (rows[:, 0], rows[:, 1], rows[:, 2], w, rows[:, 3 : 3 + kp], rows[:, 3 + kp :])
        objective = self.objective_class(*columns, penalizer=self.penalizer)
        with np.errstate(all="ignore"):
            if len(w) > objective.warm_start_rows:  # fit every k-th row; a few Newton steps on all finish the path
                step = int(np.ceil(len(w) / objective.subsample))
                x_, t_, T__, w_, zp_, zd_ = (c[::step] for c in columns)
                w_ = w_ * (objective.n / w_.sum())
                sub = self.objective_class(x_, t_, T__, w_, zp_, zd_, penalizer=self.penalizer, scale=objective.scale)
                start = self.plain_start(x_, t_, T__, w_)
                start[list(sub.time_scaled)] += np.log(objective.scale * T__.max())  # to the full fit's time scale
                x0 = solve(sub, np.concatenate([start, np.zeros(sub.n_params - 4)]), gtol=1e-6).theta
                x0 = newton_polish(objective, x0)
            else:
                start = self.plain_start(rows[:, 0], rows[:, 1], rows[:, 2], w)
                x0 = np.concatenate([start, np.zeros(objective.n_params - 4)])
        solution = solve(objective, x0)
        theta, value, gradient, hessian = solution.theta, solution.value, solution.gradient, solution.hessian
        if not (np.isfinite(value) and np.max(np.abs(gradient)) < 1e-7):
            raise CrmvalueError(
                f"{self.label} did not converge (penalizer={self.penalizer}): {solution.message}; "
                "set a larger penalizer or drop covariates"
            )
        if not np.all(np.linalg.eigvalsh(hessian) > 0):
            raise CrmvalueError(f"{self.label}: the Hessian is not positive definite at the estimate")
        penalty = objective.penalty(theta)  # on the coefficients of the scaled columns, as fitted
        theta = theta / sizes  # back to the covariates' own units: gamma z = (gamma s)(z / s)
        covariance = np.linalg.inv(hessian) / objective.n / np.outer(sizes, sizes)
        base = np.exp(theta[:4])
        base[list(objective.time_scaled)] /= objective.scale
        self.params_ = self.params_class(*map(float, base))
        self.gamma_purchase_ = theta[4 : 4 + kp].copy()
        self.gamma_dropout_ = theta[4 + kp :].copy()
        self.coefficient_names_ = {"purchase": names_p, "dropout": names_d}
        # the objective is minus the mean log-likelihood in scaled time plus the penalty
        self.log_likelihood_ = -(value - penalty) * objective.n + objective.sum_wx * np.log(objective.scale)
        self.covariance_ = covariance
        se = np.sqrt(np.maximum(np.diag(covariance), 0.0))
        se[:4] *= base  # delta method: se(p) = p se(log p)
        names = self.params_class.parameter_names()
        index = [*names, *(f"purchase:{c}" for c in names_p), *(f"dropout:{c}" for c in names_d)]
        self.standard_errors_ = pd.Series(se, index=index)
        self.n_customers_ = float(w.sum())
        self.n_patterns_ = len(w)
        self.n_evaluations_ = solution.n_evaluations
        return self

    @property
    def n_params(self) -> int:
        return 4 + len(self.gamma_purchase_) + len(self.gamma_dropout_)

    def customer_params(self, n: int, z_purchase=None, z_dropout=None):
        """The plain model's parameters of ``n`` customers, with one value per customer (an array) for every
        parameter the covariates act on; the plain model's formulas broadcast over them."""
        zp, _ = covariate_matrix(z_purchase, n, "purchase")
        zd, _ = covariate_matrix(z_dropout, n, "dropout")
        if zp.shape[1] != len(self.gamma_purchase_) or zd.shape[1] != len(self.gamma_dropout_):
            raise CrmvalueError(
                f"{self.label}: fitted with {len(self.gamma_purchase_)} purchase and {len(self.gamma_dropout_)} "
                f"dropout covariates, given {zp.shape[1]} and {zd.shape[1]}"
            )
        return self.own_params(self.params_, self.gamma_purchase_, self.gamma_dropout_, zp, zd)

    @classmethod
    def own_params(cls, params, gamma_purchase, gamma_dropout, z_purchase, z_dropout):
        """``params`` with each parameter the covariates act on replaced by the customers' own values (arrays);
        ``z_purchase`` and ``z_dropout`` are n x k matrices."""
        values = dict(params.as_dict())
        names = [f.name for f in fields(cls.params_class)]
        objective = cls.objective_class
        for signs, z, gamma in (
            (objective.purchase_signs, z_purchase, gamma_purchase),
            (objective.dropout_signs, z_dropout, gamma_dropout),
        ):
            effect = np.asarray(z, float) @ np.asarray(gamma, float).reshape(-1)
            for j, sign in signs.items():
                values[names[j]] = values[names[j]] * np.exp(sign * effect)
        return cls.params_class(**values)

    @classmethod
    def simulate(cls, params, gamma_purchase, gamma_dropout, z_purchase, z_dropout, T, seed=None) -> pd.DataFrame:
        """One customer per entry of ``T``, each drawn exactly from the plain model with her own parameters
        (the plain simulators broadcast over arrays of parameters): columns ``frequency, recency, T``."""
        T_ = np.asarray(T, float).reshape(-1)
        zp, _ = covariate_matrix(z_purchase, len(T_), "purchase")
        zd, _ = covariate_matrix(z_dropout, len(T_), "dropout")
        if zp.shape[1] != len(np.atleast_1d(gamma_purchase)) or zd.shape[1] != len(np.atleast_1d(gamma_dropout)):
            raise CrmvalueError("simulate_with_covariates: one coefficient per covariate column is needed")
        return cls.own_params(params, gamma_purchase, gamma_dropout, zp, zd).simulate_summary(T_, seed)

    def p_alive(self, frequency, recency, T, z_purchase=None, z_dropout=None) -> np.ndarray:
        x, t_x, T_ = checked_history(frequency, recency, T)
        return np.asarray(self.customer_params(len(x), z_purchase, z_dropout).p_alive(x, t_x, T_))

    def expected_purchases(self, t, frequency, recency, T, z_purchase=None, z_dropout=None) -> np.ndarray:
        """E[Y(t) | x, t_x, T, z]: expected repeat purchases in the next ``t`` per customer."""
        x, t_x, T_ = checked_history(frequency, recency, T)
        own = self.customer_params(len(x), z_purchase, z_dropout)
        return np.asarray(own.expected_purchases(t, x, t_x, T_))
