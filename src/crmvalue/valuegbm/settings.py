"""The boosted value model's settings: one frozen dataclass of plain values that goes to and from JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

from crmvalue.errors import CrmvalueError
from crmvalue.features import DAYS_PER_UNIT, TimeUnit

if TYPE_CHECKING:
    from crmvalue.config import ExperimentConfig

Objective = Literal["tweedie", "l2", "log_l2", "hurdle_lognormal"]
OBJECTIVES: tuple[str, ...] = ("tweedie", "l2", "log_l2", "hurdle_lognormal")


class GbmNotEstimable(CrmvalueError):
    """Valid data on which the boosted value model cannot be trained: too short for a training cut-off and the
    held-out one, or no revenue in any label window. ``model.value_model: auto`` falls back to BG/NBD x
    Gamma-Gamma on it (``reason`` says why); ``gbm`` stops the run with the message."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class GbmSettings:
    """How the boosted value model is trained.

    The objective was chosen by a backtest on CDNOW master (see the README, "The boosted value model"):
    Tweedie with variance power 1.2, boosted from the BTYD forecast (``btyd_offset``), against Tweedie 1.5 and
    1.8 with and without the offset, plain L2, L2 on ``log1p`` with a smearing back-transform and a two-part
    (hurdle) lognormal model.
    """

    objective: Objective = "tweedie"
    tweedie_variance_power: float = 1.2
    btyd_offset: bool = True  # tweedie: boost from the BG/NBD x Gamma-Gamma forecast (log offset)
    learning_rate: float = 0.1
    num_leaves: int = 15
    min_data_in_leaf: int = 200
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.5
    lambda_l2: float = 1.0
    max_bin: int = 63
    num_boost_round: int = 1000  # the most rounds of the early-stopping fit
    early_stopping_rounds: int = 30
    step_days: int = 30  # days between training cut-offs, as churn.step_days
    min_history_days: int = 60  # the earliest cut-off is this many days after the first purchase, as churn's
    sample_customers: int | None = 25_000  # train on at most this many customers (all are scored), as churn's
    time_unit: TimeUnit = "weeks"  # of the RFM and BG/NBD features
    penalizer: float = 0.0  # BG/NBD's, as model.penalizer
    gamma_gamma_penalizer: float = 0.0
    seed: int = 0
    num_threads: int = 2

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise CrmvalueError(f"value gbm: objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if not 1.0 < self.tweedie_variance_power < 2.0:
            raise CrmvalueError(
                f"value gbm: tweedie_variance_power must be in (1, 2), got {self.tweedie_variance_power}"
            )
        if self.btyd_offset and self.objective != "tweedie":
            raise CrmvalueError(
                f"value gbm: btyd_offset applies to the tweedie objective only; set btyd_offset: false for "
                f"{self.objective}"
            )
        if self.time_unit not in DAYS_PER_UNIT:
            raise CrmvalueError(f"value gbm: time_unit must be days or weeks, got {self.time_unit!r}")
        if self.max_bin < 2:
            raise CrmvalueError(f"value gbm: max_bin must be at least 2, got {self.max_bin}")
        for name in ("num_leaves", "min_data_in_leaf", "num_boost_round", "early_stopping_rounds", "step_days"):
            if int(getattr(self, name)) < 1:
                raise CrmvalueError(f"value gbm: {name} must be at least 1, got {getattr(self, name)}")
        for name in ("learning_rate", "feature_fraction", "bagging_fraction"):
            if not 0.0 < float(getattr(self, name)) <= 1.0:
                raise CrmvalueError(f"value gbm: {name} must be in (0, 1], got {getattr(self, name)}")
        if self.min_history_days < 0 or self.num_threads < 1:
            raise CrmvalueError("value gbm: min_history_days must be >= 0 and num_threads >= 1")
        if self.sample_customers is not None and self.sample_customers < 1:
            raise CrmvalueError(f"value gbm: sample_customers must be at least 1, got {self.sample_customers}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GbmSettings:
        """The settings saved by :meth:`as_dict`; an unknown key is an error, a missing one takes its default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CrmvalueError(f"value gbm: unknown setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
        return cls(**values)

    def lightgbm_params(self, objective: str, metric: str, **extra: Any) -> dict[str, Any]:
        """LightGBM's parameters for one booster; deterministic for a seed, as the churn classifier's."""
        return {
            "objective": objective,
            "metric": metric,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1,
            "lambda_l2": self.lambda_l2,
            "max_bin": self.max_bin,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
            **extra,
        }


def settings_from_config(cfg: ExperimentConfig, **overrides: Any) -> GbmSettings:
    """The settings an experiment implies: its time unit and BTYD penalizers, and the churn model's cut-off step,
    minimum history, seed and training sample; ``overrides`` (e.g. a ``value_gbm`` config section) go over them."""
    implied = {
        "time_unit": cfg.time_unit,
        "penalizer": cfg.model.penalizer,
        "gamma_gamma_penalizer": cfg.model.gamma_gamma_penalizer,
        "step_days": cfg.churn.step_days,
        "min_history_days": cfg.churn.min_history_days,
        "seed": cfg.churn.seed,
        "sample_customers": cfg.churn.sample_customers,
    }
    return GbmSettings.from_dict({**implied, **overrides})
