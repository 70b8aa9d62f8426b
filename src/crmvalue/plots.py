"""Diagnostic figures (matplotlib): functions return a Figure and never write files.

Each takes ``ax=None``: given axes, it draws on them and returns their figure; without, it makes a
figure of its own. The backend is the caller's choice (the CLI sets ``Agg``); nothing here switches it.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FixedFormatter, FixedLocator, FuncFormatter, NullFormatter

from crmvalue import schema

QUADRANT_COLOURS = {"A": "#1b9e77", "B": "#7570b3", "C": "#d95f02", "D": "#999999"}


def _axes(ax, figsize: tuple[float, float]):
    """``ax`` and its figure, or a new figure of ``figsize`` and its axes; the flag says whether the figure is new
    (only a figure made here is laid out here: the caller's stays as the caller arranged it)."""
    if ax is not None:
        return ax.figure, ax, False
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax, True


SCATTER_POINTS = 50_000  # per quadrant: more points add ink and seconds, not information
NO_CURRENT_STRIP = (0.25, 0.08)  # the strip of customers without current value: from/to this share of the
# log axis's span left of its lowest decade


def quadrant_scatter(scores: pd.DataFrame, current_threshold: float, potential_threshold: float, ax=None):
    """Potential value (CLV) against current value, a dot per customer, at most SCATTER_POINTS per quadrant.

    Current value is on a log scale; the customers without any (0, or net returns: all low current) are
    spread by a seeded uniform jitter over a strip, labelled "none", left of the scale. Potential value is
    on a symlog scale from 0 when none is negative. The largest quadrant is drawn first, the smallest last.
    """
    fig, ax, own = _axes(ax, (8.5, 5.5))
    current = scores["current_value"].to_numpy(dtype=float)
    buying = current > 0
    ends = np.log10(np.concatenate([current[buying], [current_threshold] if current_threshold > 0 else []]))
    lo, hi = (np.floor(ends.min()), np.ceil(ends.max())) if ends.size else (0.0, 1.0)
    hi = max(hi, lo + 1)
    strip = lo - np.array(NO_CURRENT_STRIP) * (hi - lo)  # log10 of the strip's left and right edge
    jitter = np.random.default_rng(0).uniform(strip[0], strip[1], size=len(current))
    x = np.where(buying, current, 10**jitter)
    y = scores["potential_value"].to_numpy(dtype=float)
    quadrant = scores["quadrant"].to_numpy()
    counts = {q: int((quadrant == q).sum()) for q in QUADRANT_COLOURS}
    rng = np.random.default_rng(0)
    handles = {}
    for layer, q in enumerate(sorted(counts, key=lambda k: -counts[k])):
        rows = np.flatnonzero(quadrant == q)
        if rows.size > SCATTER_POINTS:
            rows = np.sort(rng.choice(rows, SCATTER_POINTS, replace=False))
        label = f"{q} ({counts[q]:,})"
        handles[q] = ax.scatter(
            x[rows], y[rows], s=4, alpha=0.4, color=QUADRANT_COLOURS[q], label=label, zorder=2 + layer
        )
    ax.axvspan(10 ** strip[0], 10 ** strip[1], color="0.93", zorder=1)
    # with a cut of 0, any current value is high: the line falls between the strip and the scale
    cut = current_threshold if current_threshold > 0 else 10 ** ((strip[1] + lo) / 2)
    line = ax.axvline(cut, color="black", lw=0.8, ls="--", zorder=10)
    ax.axhline(potential_threshold, color="black", lw=0.8, ls="--", zorder=10)
    ax.set_xscale("log")
    ax.set_xlim(10 ** (strip[0] - 0.02 * (hi - lo)), 10**hi)
    decades = np.arange(lo, hi + 1)
    ax.xaxis.set_major_locator(FixedLocator([10 ** strip.mean(), *10**decades]))
    ax.xaxis.set_major_formatter(FixedFormatter(["none", *(_money_tick(10**d) for d in decades)]))
    ax.xaxis.set_minor_locator(FixedLocator((np.arange(2, 10) * 10 ** decades[:-1, None]).ravel()))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yscale("symlog", linthresh=1.0)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _money_tick(v)))
    if len(y) and y.min() >= 0:
        ax.set_ylim(bottom=0)
    ax.set_xlabel("current value: revenue in the trailing window (log scale; none: no revenue)")
    ax.set_ylabel("potential value (CLV)")
    ax.set_title("Value quadrants")
    line.set_label(f"cuts: current {_money_tick(current_threshold)}, potential {_money_tick(potential_threshold)}")
    ax.legend(
        handles=[handles[q] for q in QUADRANT_COLOURS] + [line],
        title="quadrant (customers)",
        markerscale=4,
        loc="upper left",  # beside the axes: every corner of the plot is a quadrant
        bbox_to_anchor=(1.01, 1.0),
    )
    if own:
        fig.tight_layout()
    return fig


def _money_tick(value: float) -> str:
    """$1, $10, $1k, $10k, $12.50: short money for the axis and the legend (the $ escaped from mathtext)."""
    if abs(value) >= 1000 and value % 1000 == 0:
        return f"\\${value / 1000:,.0f}k"
    return f"\\${value:,.0f}" if value == round(value) else f"\\${value:,.2f}"


def calibration_vs_holdout(table: pd.DataFrame, ax=None):
    """Mean holdout purchases, actual against predicted, by calibration-period frequency."""
    fig, ax, own = _axes(ax, (7, 4.5))
    labels = [f"{int(f)}+" if i == len(table) - 1 else str(int(f)) for i, f in enumerate(table.index)]
    positions = np.arange(len(table))
    ax.plot(positions, table["actual"], marker="o", label="actual")
    ax.plot(positions, table["predicted"], marker="s", ls="--", label="model")
    ax.set_xticks(positions, labels)
    ax.set_xlabel("purchases in calibration period (repeat periods)")
    ax.set_ylabel("mean purchases in holdout period")
    ax.set_title("Conditional expectations: calibration vs holdout")
    ax.legend()
    if own:
        fig.tight_layout()
    return fig


def p_alive_distribution(p_alive, ax=None):
    fig, ax, own = _axes(ax, (7, 4.5))
    ax.hist(np.asarray(p_alive, float), bins=50, range=(0, 1), color="#4477aa")
    ax.set_xlabel("P(alive)")
    ax.set_ylabel("customers")
    ax.set_title("P(alive) at the observation end")
    if own:
        fig.tight_layout()
    return fig


# Model-fit diagnostics: each takes a table from crmvalue.diagnostics. The conditional
# expectations figure of FHL (2005a) is calibration_vs_holdout above.


def _frequency_labels(index) -> list[str]:
    """Class labels with the pooled last class marked, e.g. 0, 1, ..., 7+."""
    return [f"{int(f)}+" if i == len(index) - 1 else str(int(f)) for i, f in enumerate(index)]


def period_transactions_plot(table: pd.DataFrame, ax=None):
    """Customers by calibration repeat transactions, observed against model (FHL 2005a).

    ``table`` is :func:`crmvalue.diagnostics.period_transactions`.
    """
    fig, ax, own = _axes(ax, (7, 4.5))
    positions = np.arange(len(table))
    width = 0.4
    ax.bar(positions - width / 2, table["observed"], width, label="actual", color="#4477aa")
    ax.bar(positions + width / 2, table["expected"], width, label="model", color="#ee6677")
    ax.set_xticks(positions, _frequency_labels(table.index))
    ax.set_xlabel("repeat transactions in calibration period")
    ax.set_ylabel("customers")
    ax.set_title("Frequency of repeat transactions")
    ax.legend()
    if own:
        fig.tight_layout()
    return fig


def tracking_plots(tracking: pd.DataFrame, calibration_period: float | None = None, ax=None):
    """Cumulative and incremental repeat transactions, actual against model (FHL 2005a); ``ax``: a pair of axes.

    ``tracking`` is :func:`crmvalue.diagnostics.repeat_transactions_tracking`; the dashed vertical
    line is the calibration end (default ``tracking.attrs["calibration_period"]``).
    """
    if calibration_period is None:
        calibration_period = tracking.attrs.get("calibration_period")
    if ax is None:
        fig, (cumulative, incremental) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
        own = True
    else:  # a pair of axes, cumulative above incremental
        cumulative, incremental = ax
        fig, own = cumulative.figure, False
    period = tracking.index.to_numpy()
    for panel, kind in ((cumulative, "cumulative"), (incremental, "incremental")):
        panel.plot(period, tracking[f"actual_{kind}"], color="black", label="actual")
        panel.plot(period, tracking[f"expected_{kind}"], color="#ee6677", ls="--", label="model")
        if calibration_period is not None:
            panel.axvline(calibration_period, color="grey", lw=0.8, ls=":")
        panel.set_ylabel(f"{kind} repeat transactions")
        panel.legend()
    cumulative.set_title("Tracking repeat transactions (dotted line: end of calibration)")
    days = tracking.attrs.get("period_days")
    incremental.set_xlabel({7: "week", 1: "day"}.get(days, f"period of {days} days" if days else "period"))
    if own:
        fig.tight_layout()
    return fig


def matrix_plot(matrix: pd.DataFrame, title: str = "", colorbar_label: str = "", ax=None):
    """Heatmap of a frequency x recency matrix (P(alive) or expected purchases).

    ``matrix`` is :func:`crmvalue.diagnostics.p_alive_matrix` or ``expected_purchases_matrix``:
    rows recency, columns frequency. Impossible histories (NaN) are left blank.
    """
    fig, ax, own = _axes(ax, (7, 5.5))
    image = ax.imshow(
        matrix.to_numpy(dtype=float),
        origin="lower",
        aspect="auto",
        cmap="viridis",
        extent=(matrix.columns[0] - 0.5, matrix.columns[-1] + 0.5, matrix.index[0] - 0.5, matrix.index[-1] + 0.5),
    )
    fig.colorbar(image, ax=ax, label=colorbar_label)
    ax.set_xlabel("frequency (repeat purchases)")
    ax.set_ylabel("recency (time of last purchase)")
    ax.set_title(title)
    if own:
        fig.tight_layout()
    return fig


def spend_fit_plot(fit: pd.DataFrame, ax=None):
    """Observed average spend of repeat buyers against the Gamma-Gamma density (FHL 2005b).

    ``fit`` is :func:`crmvalue.diagnostics.gamma_gamma_spend_fit`.
    """
    fig, ax, own = _axes(ax, (7, 4.5))
    ax.bar(
        fit["left"],
        fit["observed_density"],
        width=fit["right"] - fit["left"],
        align="edge",
        color="#4477aa",
        alpha=0.6,
        label="actual",
    )
    ax.plot((fit["left"] + fit["right"]) / 2, fit["model_density"], color="#ee6677", label="model")
    ax.set_xlabel("average spend per repeat transaction")
    ax.set_ylabel("density")
    ax.set_title("Gamma-Gamma fit to average spend")
    ax.legend()
    if own:
        fig.tight_layout()
    return fig


def diagnostic_figures(
    tables: dict[str, pd.DataFrame], time_unit: str, horizon: float | None = None
) -> dict[str, object]:
    """Figures for the tables of :func:`crmvalue.diagnostics.fit_diagnostics` (and a spend fit),
    keyed by artifact path. Tables that are absent are skipped."""
    figures = {}
    if "period_transactions" in tables:
        figures[schema.PLOT_PERIOD_TRANSACTIONS] = period_transactions_plot(tables["period_transactions"])
    if "tracking" in tables:
        figures[schema.PLOT_TRACKING] = tracking_plots(tables["tracking"])
    if "p_alive_matrix" in tables:
        figures[schema.PLOT_P_ALIVE_MATRIX] = matrix_plot(
            tables["p_alive_matrix"], f"P(alive) by frequency and recency ({time_unit})", "P(alive)"
        )
    if "expected_purchases_matrix" in tables:
        over = f" in the next {horizon:g} {time_unit}" if horizon is not None else ""
        figures[schema.PLOT_EXPECTED_PURCHASES_MATRIX] = matrix_plot(
            tables["expected_purchases_matrix"], f"Expected purchases{over}", "expected purchases"
        )
    if "spend_fit" in tables:
        figures[schema.PLOT_SPEND_FIT] = spend_fit_plot(tables["spend_fit"])
    return figures


# Churn model evaluation: ``scores`` maps a label to each scorer's churn probability on the test rows.


def feature_importance_plot(importance: pd.Series, top: int = 20, ax=None):
    """Horizontal bars of total gain per feature, largest at the top."""
    shown = importance.head(top)[::-1]
    fig, ax, own = _axes(ax, (7, 0.3 * len(shown) + 1.5))
    ax.barh(shown.index.astype(str), shown.to_numpy(), color="#4477aa")
    ax.set_xlabel("total gain")
    ax.set_title("Churn model: feature importance (gain)")
    if own:
        fig.tight_layout()
    return fig


def roc_plot(y, scores: dict, ax=None):
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax, own = _axes(ax, (6, 5.5))
    for label, score in scores.items():
        fpr, tpr, _ = roc_curve(y, score)
        ax.plot(fpr, tpr, label=f"{label} (AUC {roc_auc_score(y, score):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("Churn, out of time: ROC")
    ax.legend(loc="lower right", fontsize=8)
    if own:
        fig.tight_layout()
    return fig


def precision_recall_plot(y, scores: dict, ax=None):
    from sklearn.metrics import average_precision_score, precision_recall_curve

    fig, ax, own = _axes(ax, (6, 5.5))
    for label, score in scores.items():
        precision, recall, _ = precision_recall_curve(y, score)
        ax.plot(recall, precision, label=f"{label} (AP {average_precision_score(y, score):.3f})")
    ax.axhline(float(np.mean(y)), color="grey", ls=":", lw=0.8, label="churn rate")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Churn, out of time: precision-recall")
    ax.legend(loc="lower left", fontsize=8)
    if own:
        fig.tight_layout()
    return fig


def reliability_plot(y, scores: dict, bins: int = 10, ax=None):
    """Mean predicted against observed churn rate, in quantile bins of each score."""
    from sklearn.calibration import calibration_curve

    fig, ax, own = _axes(ax, (6, 5.5))
    for label, score in scores.items():
        observed, predicted = calibration_curve(y, np.clip(score, 0, 1), n_bins=bins, strategy="quantile")
        ax.plot(predicted, observed, marker="o", ms=3, label=label)
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=0.8)
    ax.set_xlabel("predicted churn probability")
    ax.set_ylabel("observed churn rate")
    ax.set_title("Churn, out of time: reliability")
    ax.legend(loc="upper left", fontsize=8)
    if own:
        fig.tight_layout()
    return fig


# CRM analyses (seeds 003, 004): each takes a table from crmvalue.analyses.

CPM_ACTIVE_COLOUR, CPM_LAPSED_COLOUR = "#1b9e77", "#999999"


def decile_chart(table: pd.DataFrame, ax=None):
    """Revenue share per value decile (bars) and the cumulative share (line, right axis).

    ``table`` is :func:`crmvalue.analyses.decile_table`; the 80/20 reading of seed 004.
    """
    fig, ax, own = _axes(ax, (7, 4.5))
    positions = np.arange(len(table))
    ax.bar(positions, table["revenue_share"] * 100, color="#4477aa", label="share of revenue")
    ax.set_xticks(positions, [str(d) for d in table.index])
    ax.set_xlabel("value decile (1 = top 10% of customers by revenue)")
    ax.set_ylabel("share of revenue (%)")
    cumulative = ax.twinx()
    cumulative.plot(positions, table["cumulative_share"] * 100, color="#ee6677", marker="o", label="cumulative share")
    cumulative.set_ylim(0, 105)
    cumulative.set_ylabel("cumulative share of revenue (%)")
    ax.set_title("Decile analysis: who brings the revenue")
    fig.legend(loc="center right", bbox_to_anchor=(0.85, 0.5), fontsize=8)
    if own:
        fig.tight_layout()
    return fig


def cohort_heatmap(matrix: pd.DataFrame, ax=None):
    """Share of each acquisition cohort buying in each later period; unobserved cells blank.

    ``matrix`` is :func:`crmvalue.analyses.cohort_retention`.
    """
    values = matrix.to_numpy(dtype=float) * 100
    fig, ax, own = _axes(ax, (8, 0.3 * len(matrix) + 2.5))
    # column 0 is always 100%: scale the colours to the later periods, or they all look alike
    later = values[:, 1:]
    top = float(np.nanmax(later)) if np.isfinite(later).any() and np.nanmax(later) > 0 else 100.0
    image = ax.imshow(values, aspect="auto", cmap="viridis", vmin=0, vmax=top)
    fig.colorbar(image, ax=ax, label="customers of the cohort buying (%)", extend="max")
    if values.size <= 400:  # small enough to print each share
        for (row, col), value in np.ndenumerate(values):
            if np.isfinite(value):
                ax.text(
                    col,
                    row,
                    f"{value:.0f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if value > 0.6 * top else "white",
                )
    ax.set_yticks(np.arange(len(matrix)), [str(p) for p in matrix.index])
    step = max(1, len(matrix.columns) // 12)
    ax.set_xticks(np.arange(0, len(matrix.columns), step), [str(c) for c in matrix.columns[::step]])
    ax.set_xlabel("periods since first purchase")
    ax.set_ylabel("cohort (period of first purchase)")
    ax.set_title("Cohort retention")
    if own:
        fig.tight_layout()
    return fig


def rfm_segment_chart(counts, ax=None):
    """Customers per RFM segment, horizontal bars in the mapping's order.

    ``counts`` is a Series of customers by segment, or :func:`crmvalue.analyses.rfm_segment_table`.
    """
    if isinstance(counts, pd.DataFrame):
        counts = counts["customers"]
    shown = counts[::-1]
    fig, ax, own = _axes(ax, (7, 0.35 * len(shown) + 1.5))
    ax.barh([str(s) for s in shown.index], shown.to_numpy(), color="#4477aa")
    ax.set_xlabel("customers")
    ax.set_title("RFM segments")
    if own:
        fig.tight_layout()
    return fig


def cpm_group_chart(table: pd.DataFrame, ax=None):
    """Customers per CPM group, active groups 1-5 in green and lapsed 6-10 in grey.

    ``table`` is :func:`crmvalue.analyses.cpm_table`.
    """
    fig, ax, own = _axes(ax, (8, 4.5))
    positions = np.arange(len(table))
    colours = [CPM_ACTIVE_COLOUR if g <= 5 else CPM_LAPSED_COLOUR for g in table.index]
    ax.bar(positions, table["customers"], color=colours)
    ax.set_xticks(
        positions,
        [f"{g} {label}" for g, label in zip(table.index, table["cpm_label"])],
        rotation=35,
        ha="right",
        fontsize=8,
    )
    ax.set_ylabel("customers")
    ax.set_title("CPM groups (green: active, grey: lapsed)")
    if own:
        fig.tight_layout()
    return fig


def retention_chart(table: pd.DataFrame, ax=None):
    """Active customers per period (bars) and the retention rate (line, right axis).

    ``table`` is :func:`crmvalue.analyses.retention_table`.
    """
    fig, ax, own = _axes(ax, (8, 4.5))
    positions = np.arange(len(table))
    ax.bar(positions, table["active_customers"], color="#4477aa", label="active customers")
    step = max(1, len(table) // 12)
    ax.set_xticks(positions[::step], [str(p) for p in table.index[::step]], rotation=35, ha="right")
    ax.set_ylabel("active customers")
    rate = ax.twinx()
    rate.plot(positions, table["retention_rate"] * 100, color="#ee6677", marker="o", ms=3, label="retention rate")
    rate.set_ylim(0, 105)
    rate.set_ylabel("retention rate (% of previous period's buyers)")
    ax.set_title("Retention per period")
    fig.legend(loc="upper right", bbox_to_anchor=(0.85, 0.9), fontsize=8)
    if own:
        fig.tight_layout()
    return fig
