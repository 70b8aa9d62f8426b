"""The ``backtest:`` section of the experiment config: how many cut-offs, how far apart, which candidates."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crmvalue.errors import CrmvalueError


class BacktestConfig(BaseModel):
    """Rolling-origin backtest settings (``crmvalue backtest``; flags override them)."""

    model_config = ConfigDict(extra="forbid")

    cutoffs: int = Field(4, ge=1, description="number of cut-offs; the last is the observation end - the horizon")
    step_days: int | None = Field(
        None, gt=0, description="days between cut-offs (default: the horizon, so the forecast windows do not overlap)"
    )
    min_history_days: int = Field(
        90, ge=1, description="the earliest cut-off is at least this many days after the first purchase"
    )
    models: list[str] | None = Field(
        None, min_length=1, description="candidates to compare (default: every registered candidate)"
    )


def with_overrides(base: BacktestConfig, overrides: dict) -> BacktestConfig:
    """``base`` with the non-None ``overrides`` (flag values) applied and validated; a bad value is one line."""
    raw = base.model_dump() | {k: v for k, v in overrides.items() if v is not None}
    try:
        return BacktestConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"backtest.{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')} (got {e['input']!r})"
            for e in exc.errors()
        ]
        raise CrmvalueError("; ".join(problems)) from None
