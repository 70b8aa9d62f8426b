"""The boosted value model: fit on rolling cut-offs up to a fit end, score at a date, save and load as plain files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from crmvalue.churn import NO_BGNBD, prepare, sample_customers, score_in_chunks
from crmvalue.customer_days import CustomerDays, customer_days, day_number
from crmvalue.errors import CrmvalueError
from crmvalue.io import atomic_write_text
from crmvalue.valuegbm.objectives import Split, expected_revenue, fit_objective
from crmvalue.valuegbm.rows import (
    LABEL,
    BtydAt,
    add_spend_features,
    btyd_at,
    gbm_feature_columns,
    training_cutoffs,
    training_rows,
)
from crmvalue.valuegbm.settings import GbmNotEstimable, GbmSettings, settings_from_config

if TYPE_CHECKING:
    from crmvalue.config import ExperimentConfig

STATE_FILE = "value_gbm.json"
FORMAT = 1  # of STATE_FILE; a reader refuses another


class GbmValueModel:
    """LightGBM regressor of each customer's revenue in the next ``horizon_days``, trained on rolling cut-offs.

    For a fit end ``F`` the training cut-offs are ``F - horizon - k * step_days`` back to ``min_history_days``
    after the first purchase, so every label window ``(c, c + horizon]`` ends by ``F``; the rows of a cut-off
    are the customers with a purchase on or before it, with features from those purchases only
    (:func:`crmvalue.valuegbm.rows.cutoff_rows`). The latest cut-off ``F - horizon`` is held out for early
    stopping, the model trained on the cut-offs whose labels end by it (purged); every part is then refitted on
    all cut-offs with the rounds found. Nothing after ``F`` is read.

    ``fit`` returns ``self``; learned state ends in ``_``. The model is saved as its boosters' text and one JSON
    file of plain numbers (:meth:`save`, :meth:`load`), never a pickle.
    """

    def __init__(self, settings: GbmSettings | None = None):
        self.settings = settings or GbmSettings()

    # ------------------------------------------------------------------------------------------------ fit

    def fit(self, days: pd.DataFrame | CustomerDays, fit_end, horizon_days: int) -> GbmValueModel:
        """Train on the transactions up to ``fit_end`` (later ones are ignored) for revenue over ``horizon_days``."""
        s = self.settings
        if int(horizon_days) < 1:
            raise CrmvalueError(f"value gbm: horizon_days must be at least 1, got {horizon_days}")
        horizon_days = int(horizon_days)
        days = customer_days(days)
        fit_end = pd.Timestamp(fit_end).normalize()
        data = prepare(days, fit_end)
        if len(data.day) == 0:
            raise CrmvalueError(f"value gbm: no purchase on or before the fit end {fit_end.date()}")
        sample = sample_customers(data, s.sample_customers, s.seed)
        cutoffs = training_cutoffs(sample.first_day, fit_end, horizon_days, s.step_days, s.min_history_days)
        held_out = cutoffs[0]
        purged = [c for c in cutoffs if c + pd.Timedelta(days=horizon_days) <= held_out]
        if not purged:
            raise GbmNotEstimable(
                f"value gbm: no training cut-off before the held-out {held_out.date()} has its label window end "
                f"by it (step_days {s.step_days}, min_history_days {s.min_history_days}); "
                "use the BTYD value model, or lower step_days",
                f"no training cut-off whose label window ends by the held-out cut-off {held_out.date()}",
            )
        rows = training_rows(sample, days, cutoffs, horizon_days, s)
        y = rows[LABEL].to_numpy(dtype=float)
        valid = (rows["cutoff"] == held_out).to_numpy()
        train = (rows["cutoff"] <= purged[0]).to_numpy()
        if not (y[train] > 0).any() or not (y[valid] > 0).any():
            raise GbmNotEstimable(
                "value gbm: no customer has revenue in the training label windows or in the held-out one; "
                "there is no revenue to learn",
                "no revenue in the training or the held-out label windows",
            )
        columns = gbm_feature_columns(rows)
        fitted = fit_objective(s, Split(rows[columns], y, train, valid))

        self.fit_end_ = fit_end
        self.horizon_days_ = horizon_days
        self.feature_names_in_ = tuple(columns)
        self.boosters_ = fitted.boosters
        self.constants_ = fitted.constants
        self.rounds_ = fitted.rounds
        self.cutoffs_ = tuple(cutoffs)
        self.training_rows_ = len(rows)
        self.btyd_ = btyd_at(data, fit_end, s)  # every customer's, for scoring at the fit end
        return self

    # ------------------------------------------------------------------------------------------------ scoring

    def predict(self, days: pd.DataFrame | CustomerDays, at=None) -> pd.DataFrame:
        """Expected revenue in ``(at, at + horizon_days]`` of every customer with a purchase on or before ``at``
        (default: the fit end), from the transactions up to ``at``: a frame indexed by ``customer_id`` with
        ``expected_revenue``.

        At the fit end the BTYD features use the fits made there (:attr:`btyd_`, saved with the model), so a
        loaded model scores as the trained one did; at another date they are fitted at that date.
        """
        self._check_fitted()
        at = self.fit_end_ if at is None else pd.Timestamp(at).normalize()
        days = customer_days(days)
        if len(days) == 0 or days.day.min() > day_number(at):
            raise CrmvalueError(f"value gbm: no transaction on or before the scoring date {at.date()}")
        data = prepare(days, at)
        btyd = self.btyd_ if at == self.fit_end_ else btyd_at(data, at, self.settings)
        columns = list(self.feature_names_in_)

        def score(rows: pd.DataFrame) -> np.ndarray:
            rows = add_spend_features(rows, btyd.spend)
            missing = [c for c in columns if c not in rows.columns]
            if missing:
                raise CrmvalueError(
                    f"value gbm: the data lack the feature {missing[0]!r} the model was trained with "
                    "(a quantity column?); score with data of the same columns"
                )
            return expected_revenue(self.settings.objective, self.boosters_, self.constants_, rows[columns])

        ids, revenue, _ = score_in_chunks(
            data,
            at,
            self.horizon_days_,
            self.settings.time_unit,
            NO_BGNBD if btyd.bgnbd is None else btyd.bgnbd,
            score,
        )
        return pd.DataFrame({"expected_revenue": revenue}, index=pd.Index(ids, name="customer_id"))

    def feature_importance(self) -> pd.Series:
        """Total gain per feature over every booster, largest first."""
        self._check_fitted()
        gain = sum(b.feature_importance(importance_type="gain") for b in self.boosters_.values())
        return pd.Series(gain, index=list(self.feature_names_in_), name="gain").sort_values(ascending=False)

    def _check_fitted(self) -> None:
        if not hasattr(self, "boosters_"):
            raise CrmvalueError("value gbm: the model is not fitted; call fit() or load() first")

    # ------------------------------------------------------------------------------------------------ files

    def state(self) -> dict[str, Any]:
        """The model without its boosters, as plain JSON-able values."""
        self._check_fitted()
        return {
            "format": FORMAT,
            "settings": self.settings.as_dict(),
            "fit_end": str(self.fit_end_.date()),
            "horizon_days": self.horizon_days_,
            "feature_columns": list(self.feature_names_in_),
            "parts": sorted(self.boosters_),
            "constants": self.constants_,
            "rounds": self.rounds_,
            "cutoffs": [str(c.date()) for c in self.cutoffs_],
            "training_rows": self.training_rows_,
            "btyd_at_fit_end": self.btyd_.to_dict(),
        }

    def save(self, folder: str | Path) -> Path:
        """Write ``<part>.txt`` (LightGBM's text model) per booster and ``value_gbm.json``; returns the folder."""
        folder = Path(folder)
        state = self.state()
        for part, booster in self.boosters_.items():
            atomic_write_text(folder / f"{part}.txt", booster.model_to_string())
        atomic_write_text(folder / STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> GbmValueModel:
        """The model :meth:`save` wrote to ``folder``."""
        import lightgbm as lgb

        folder = Path(folder)
        path = folder / STATE_FILE
        if not path.is_file():
            raise CrmvalueError(f"value gbm: {path} does not exist; is {folder} a saved boosted value model?")
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CrmvalueError(f"value gbm: {path} cannot be read ({str(exc).splitlines()[0]})") from None
        if state.get("format") != FORMAT:
            raise CrmvalueError(f"value gbm: {path} has format {state.get('format')!r}; this version reads {FORMAT}")
        model = cls(GbmSettings.from_dict(state["settings"]))
        boosters = {}
        for part in state["parts"]:
            booster_path = folder / f"{part}.txt"
            if not booster_path.is_file():
                raise CrmvalueError(f"value gbm: {booster_path} does not exist; the saved model is incomplete")
            boosters[part] = lgb.Booster(model_str=booster_path.read_text())
        model.fit_end_ = pd.Timestamp(state["fit_end"])
        model.horizon_days_ = int(state["horizon_days"])
        model.feature_names_in_ = tuple(state["feature_columns"])
        model.boosters_ = boosters
        model.constants_ = {k: float(v) for k, v in state["constants"].items()}
        model.rounds_ = {k: int(v) for k, v in state["rounds"].items()}
        model.cutoffs_ = tuple(pd.Timestamp(c) for c in state["cutoffs"])
        model.training_rows_ = int(state["training_rows"])
        model.btyd_ = BtydAt.from_dict(state["btyd_at_fit_end"])
        return model


class GbmForecaster:
    """The boosted value model as a backtest candidate: fit up to the cut-off, forecast the next horizon.

    ``fit_predict(days, cutoff, horizon_days)`` returns a frame indexed by ``customer_id`` (every customer with
    a purchase on or before the cut-off) with ``expected_purchases`` (missing: the model forecasts revenue
    only) and ``expected_revenue``.
    """

    name = "gbm"

    def __init__(self, settings: GbmSettings | None = None):
        self.settings = settings or GbmSettings()

    def fit_predict(self, days: pd.DataFrame | CustomerDays, cutoff, horizon_days: int) -> pd.DataFrame:
        model = GbmValueModel(self.settings).fit(days, cutoff, horizon_days)
        forecast = model.predict(days, cutoff)
        forecast.insert(0, "expected_purchases", np.nan)
        return forecast


def forecaster_from_config(cfg: ExperimentConfig) -> GbmForecaster:
    """The backtest candidate ``gbm`` of an experiment (``lazy_factory("crmvalue.valuegbm", "forecaster_from_config")``)."""
    return GbmForecaster(settings_from_config(cfg))
