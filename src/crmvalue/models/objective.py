"""The shell both analytic-Hessian fits share: objective, gradient and Hessian computed together once per point."""

from __future__ import annotations

import numpy as np


class NewtonObjective:
    """Subclasses implement ``_evaluate(theta) -> (value, gradient, Hessian)``; scipy's ``minimize(objective,
    jac=True, hess=objective.hessian, method="trust-exact")`` then asks for them at the same point twice, and the
    second call is served from memory."""

    _cache: tuple[bytes, tuple] | None = None

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
            self._cache = (theta.tobytes(), self._evaluate(theta))
        return self._cache[1]

    def _evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        raise NotImplementedError
