"""`make bench`: crmvalue against the alternative a user would pick, measured in the same run.

Each case runs in its own subprocess (so its peak RSS is its own), repeats its measurement,
and reports the median. The table in bench/results.md is written by this script only.

    python bench/run.py [--repeats N] [--out bench/results.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("crmvalue"))


def _timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _simulated_log(n_customers: int):
    from crmvalue.models import BetaGeoParams, GammaGammaParams
    from crmvalue.simulate import simulate_transactions

    return simulate_transactions(
        n_customers, BetaGeoParams(0.25, 28.0, 0.8, 2.5), GammaGammaParams(6.0, 4.0, 15.0), seed=1
    )


def _simulated_summary(n_customers: int):
    import numpy as np

    from crmvalue.models import BetaGeoParams
    from crmvalue.simulate import simulate_bgnbd_summary

    # whole days, in weeks, as real data summarised by day are: that is what makes compression pay
    T = np.random.default_rng(1).integers(182, 547, n_customers) / 7
    summary = simulate_bgnbd_summary(BetaGeoParams(0.25, 4.0, 0.8, 2.5), T, seed=2)
    summary["recency"] = np.floor(summary["recency"] * 7) / 7
    return summary


# --- cases: each returns {"rows": str, "ours": s, "reference": s or None, "note": str} -------------


def case_rfm(repeats: int) -> dict:
    from lifetimes.utils import summary_data_from_transaction_data

    from crmvalue.features import rfm_summary

    tx = _simulated_log(300_000)
    ours_t, ours = _timed(lambda: rfm_summary(tx, "2021-12-31", "days"), repeats)
    ref_t, ref = _timed(
        lambda: summary_data_from_transaction_data(
            tx, "customer_id", "date", "amount", observation_period_end="2021-12-31"
        ),
        repeats,
    )
    same = bool((ours.sort_index().to_numpy() - ref.sort_index().to_numpy()).__abs__().max() < 1e-9)
    return {
        "rows": f"{len(tx):,} transactions, {len(ours):,} customers",
        "ours": ours_t,
        "reference": ref_t,
        "note": "identical output" if same else "OUTPUT DIFFERS",
    }


def case_rfm_5m(repeats: int) -> dict:
    """The issue's size: 5 M transactions, 500 k customers, from a Parquet file through DuckDB."""
    from lifetimes.utils import summary_data_from_transaction_data

    from crmvalue.engine import load_customer_days
    from crmvalue.features import rfm_summary
    from crmvalue.models import BetaGeoParams, GammaGammaParams
    from crmvalue.simulate import simulate_transactions

    # no returns, so lifetimes' rules and ours give the same summary and it can be compared
    tx = simulate_transactions(500_000, BetaGeoParams(0.6, 14.5, 0.8, 6.0), GammaGammaParams(6.0, 4.0, 15.0), seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tx.parquet"
        tx.to_parquet(path, index=False)
        ours_t, ours = _timed(
            lambda: rfm_summary(load_customer_days(path, engine="duckdb"), "2021-12-31", "days"), repeats
        )
        bare_t, _ = _timed(lambda: _bare_duckdb_summary(path), repeats)
    ref_t, ref = _timed(
        lambda: summary_data_from_transaction_data(
            tx, "customer_id", "date", "amount", observation_period_end="2021-12-31"
        ),
        repeats,
    )
    same = bool((ours.sort_index().to_numpy() - ref.sort_index().to_numpy()).__abs__().max() < 1e-9)
    return {
        "rows": f"{len(tx):,} transactions, {len(ours):,} customers",
        "ours": ours_t,
        "reference": ref_t,
        "note": ("identical output; " if same else "OUTPUT DIFFERS; ")
        + "crmvalue reads and validates the Parquet file with DuckDB inside its time, lifetimes gets the DataFrame "
        f"in memory; the floor, one bare DuckDB query from the file to the summary (no validation, no exact "
        f"netting, no ids), takes {bare_t:.2f} s ({ref_t / bare_t:.1f}× lifetimes)",
    }


def _bare_duckdb_summary(path: Path):
    """The least any DuckDB path can do: one query from the file to frequency/recency/T/monetary value."""
    import duckdb

    con = duckdb.connect()
    try:
        return con.sql(
            "WITH d AS (SELECT customer_id, CAST(date AS DATE) AS day, sum(amount) AS amount "
            f"FROM read_parquet('{path}') GROUP BY ALL) "
            "SELECT customer_id, count(*) - 1 AS frequency, max(day) - min(day) AS recency, "
            "DATE '2021-12-31' - min(day) AS T, "
            "coalesce((sum(amount) - arg_min(amount, day)) / nullif(count(*) - 1, 0), 0) AS monetary_value "
            "FROM d GROUP BY customer_id"
        ).df()
    finally:
        con.close()


def case_fit(repeats: int) -> dict:
    from lifetimes import BetaGeoFitter

    from crmvalue.models import BetaGeoModel

    s = _simulated_summary(1_000_000)
    ours_t, ours = _timed(lambda: BetaGeoModel().fit(s["frequency"], s["recency"], s["T"]), repeats)
    ref_t, ref = _timed(lambda: BetaGeoFitter().fit(s["frequency"], s["recency"], s["T"]), max(1, repeats - 2))
    worst = max(abs(ours.params_.as_dict()[k] / v - 1) for k, v in ref.params_.items())
    return {
        "rows": "1,000,000 customers",
        "ours": ours_t,
        "reference": ref_t,
        "note": f"compressed to {ours.n_patterns_:,} patterns; largest relative parameter difference {worst:.1e}",
    }


def case_fit_gg(repeats: int) -> dict:
    import numpy as np
    from lifetimes import GammaGammaFitter

    from crmvalue.models import GammaGammaModel

    rng = np.random.default_rng(5)
    n = 1_000_000
    x = rng.integers(1, 30, n).astype(float)
    # Gamma-Gamma spend: nu ~ Gamma(q, 1/v), each purchase ~ Gamma(p, 1/nu); m is the mean of x of them, to the cent
    nu = rng.gamma(4.0, 1 / 15.0, n)
    m = np.round(rng.gamma(6.0 * x, 1 / nu) / x, 2)
    ours_t, ours = _timed(lambda: GammaGammaModel().fit(x, m), repeats)
    ref_t, ref = _timed(lambda: GammaGammaFitter().fit(x, m), max(1, repeats - 2))
    worst = max(abs(ours.params_.as_dict()[k] / v - 1) for k, v in ref.params_.items())
    return {
        "rows": f"{n:,} repeat buyers",
        "ours": ours_t,
        "reference": ref_t,
        "note": f"same objective, analytic gradient and Hessian; largest relative parameter difference {worst:.1e}",
    }


def case_paretonbd(repeats: int) -> dict:
    import numpy as np
    from lifetimes import ParetoNBDFitter

    from crmvalue.models import ParetoNBDModel, ParetoNBDParams
    from crmvalue.models.paretonbd import LIFETIMES_START

    # continuous T and recency (exact simulated times): nearly every customer is its own pattern, so compression
    # does not help and the comparison is row for row (a summary at day resolution would compress, to crmvalue's gain)
    n = 1_000_000
    T = np.random.default_rng(1).uniform(20.0, 78.0, n)
    s = ParetoNBDParams(0.55, 10.6, 0.61, 11.7).simulate_summary(T, seed=2)
    ours_t, ours = _timed(lambda: ParetoNBDModel().fit(s["frequency"], s["recency"], s["T"]), repeats)
    # lifetimes' Nelder-Mead (~470 evaluations of its hyp2f1 likelihood): minutes, so measured once
    ref_t, ref = _timed(
        lambda: ParetoNBDFitter().fit(s["frequency"], s["recency"], s["T"], initial_params=LIFETIMES_START), 1
    )
    worst = max(abs(ours.params_.as_dict()[k] / v - 1) for k, v in ref.params_.items())
    return {
        "rows": f"{n:,} customers",
        "ours": ours_t,
        "reference": ref_t,
        "note": f"continuous times, {ours.n_patterns_:,} patterns; lifetimes gets the same raw rows and crmvalue's "
        f"start (1 for every parameter, scaled time), its default tol 1e-4; largest relative parameter difference "
        f"{worst:.1e} (lifetimes' tolerance)",
    }


def _covariate_case(name: str, repeats: int) -> dict:
    """Fit the covariate version of model ``name`` on customers with 2 purchase and 2 dropout covariates."""
    import numpy as np

    from crmvalue.models import BetaGeoModel, BetaGeoParams, ParetoNBDModel, ParetoNBDParams
    from crmvalue.models.covariate_models import covariate_model_class

    rng = np.random.default_rng(1)
    if name == "bgnbd":  # whole days, in weeks, as in the BG/NBD fit row
        plain, truth, T = BetaGeoModel, BetaGeoParams(0.25, 4.0, 0.8, 2.5), rng.integers(182, 547, 1_000_000) / 7
    else:  # continuous times, as in the Pareto/NBD fit row: every customer is a pattern of her own
        plain, truth, T = ParetoNBDModel, ParetoNBDParams(0.55, 10.6, 0.61, 11.7), rng.uniform(20.0, 78.0, 100_000)
    model_class = covariate_model_class(name)
    z = np.column_stack([rng.normal(size=len(T)) if j % 2 == 0 else rng.integers(0, 2, len(T)) for j in range(4)])
    gamma = np.array([0.3, -0.2, 0.1, -0.3])  # numeric and binary on the purchase rate, the same on the dropout
    s = model_class.simulate(truth, gamma[:2], gamma[2:], z[:, :2], z[:, 2:], T, seed=4)
    if name == "bgnbd":  # recency in whole days, as a summary by day has it
        s["recency"] = np.floor(s["recency"] * 7) / 7
    rfm = (s["frequency"], s["recency"], s["T"])
    ours_t, ours = _timed(lambda: model_class().fit(*rfm, z_purchase=z[:, :2], z_dropout=z[:, 2:]), repeats)
    plain_t, _ = _timed(lambda: plain().fit(*rfm), repeats)
    estimate = np.concatenate([ours.gamma_purchase_, ours.gamma_dropout_])
    worst = float(np.max(np.abs(estimate - gamma) / ours.standard_errors_.to_numpy()[4:]))
    return {
        "rows": f"{len(T):,} customers, 4 covariates",
        "ours": ours_t,
        "reference": None,
        "note": f"2 purchase and 2 dropout covariates (numeric, binary), {ours.n_patterns_:,} patterns; the "
        f"coefficients within {worst:.1f} standard errors of the truth; the plain fit of the same rows (no "
        f"covariates) takes {plain_t:.2f} s, the covariate fit {ours_t / plain_t:.1f}× that; lifetimes has none",
    }


def case_fit_gg_covariates(repeats: int) -> dict:
    """Gamma-Gamma with 2 spend covariates (numeric, binary) on 1 M repeat buyers, beside the plain fit of the rows."""
    import numpy as np

    from crmvalue.models import GammaGammaModel, GammaGammaParams
    from crmvalue.models.gamma_gamma_covariates import GammaGammaCovariateModel, simulate_spend

    rng = np.random.default_rng(5)
    n = 1_000_000
    x = rng.integers(1, 30, n).astype(float)
    z = np.column_stack([rng.normal(size=n), rng.integers(0, 2, n)])
    kappa = np.array([0.3, -0.5])
    m = np.round(simulate_spend(GammaGammaParams(6.0, 4.0, 15.0), kappa, z, x, seed=6), 2)  # to the cent
    ours_t, ours = _timed(lambda: GammaGammaCovariateModel().fit(x, m, z), repeats)
    plain_t, _ = _timed(lambda: GammaGammaModel().fit(x, m), repeats)
    worst = float(np.max(np.abs(ours.gamma_ - kappa) / ours.standard_errors_.to_numpy()[3:]))
    return {
        "rows": f"{n:,} repeat buyers, 2 covariates",
        "ours": ours_t,
        "reference": None,
        "note": f"spend covariates on Gamma-Gamma's scale v (numeric, binary); the coefficients within {worst:.1f} "
        f"standard errors of the truth; the plain fit of the same rows takes {plain_t:.2f} s, the covariate fit "
        f"{ours_t / plain_t:.1f}× that; lifetimes has none",
    }


def case_score(repeats: int) -> dict:
    import numpy as np
    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    from crmvalue.models import BetaGeoParams, GammaGammaParams, ValueModel

    s = _simulated_summary(1_000_000)
    s["monetary_value"] = np.where(s["frequency"] > 0, 30.0 + 10 * np.random.default_rng(3).random(len(s)), 0.0)
    bg, gg = BetaGeoParams(0.25, 4.0, 0.8, 2.5), GammaGammaParams(6.0, 4.0, 15.0)
    model = ValueModel(bg, gg, "weeks", 90, 12, 0.01)
    lbg = BetaGeoFitter()
    lbg.params_ = pd.Series(bg.as_dict())
    lbg.predict = lbg.conditional_expected_number_of_purchases_up_to_time
    lgg = GammaGammaFitter()
    lgg.params_ = pd.Series(gg.as_dict())

    def reference():
        x, r, T, m = s["frequency"], s["recency"], s["T"], s["monetary_value"]
        return pd.DataFrame(
            {
                "p_alive": lbg.conditional_probability_alive(x, r, T),
                "expected_purchases": lbg.conditional_expected_number_of_purchases_up_to_time(90 / 7, x, r, T),
                "expected_avg_value": lgg.conditional_expected_average_profit(x, m),
                "clv": lgg.customer_lifetime_value(lbg, x, r, T, m, time=12, discount_rate=0.01, freq="W"),
            }
        )

    ours_t, ours = _timed(lambda: model.predict(s), repeats)
    ref_t, ref = _timed(reference, repeats)
    ours = ours[ref.columns]  # expected_revenue too, which lifetimes has no method for
    rel = float(np.nanmax(np.abs(ours.to_numpy() - ref.to_numpy()) / np.maximum(np.abs(ref.to_numpy()), 1e-12)))
    return {
        "rows": "1,000,000 customers",
        "ours": ours_t,
        "reference": ref_t,
        "note": f"p_alive, expected_purchases, expected_avg_value, clv; largest relative difference {rel:.1e}",
    }


def _train(repeats: int, extra: list[str], target: str) -> dict:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
            start = time.perf_counter()
            subprocess.run(
                [CLI, "train", "--config", str(ROOT / "experiments" / "cdnow.yaml"), "--quiet", *extra],
                cwd=tmp,
                env=env,
                check=True,
                capture_output=True,
            )
            times.append(time.perf_counter() - start)
            stages = _stage_times(f"sqlite:///{tmp}/mlflow.db", "cdnow", digits=1, at_least=0.05)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "rows": "69,659 transactions, 23,570 customers",
        "ours": statistics.median(times),
        "reference": None,
        "note": f"fresh MLflow SQLite store each time; target <= {target}; runs {', '.join(f'{t:.1f}' for t in times)} s; "
        f"stages of the last run (s): {stages}",
        "peak_mb": peak,
    }


def case_train_50m(repeats: int) -> dict:
    """`crmvalue train` (churn and analyses on) on ~50 M generated transactions from 5 M customers (Parquet, DuckDB)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "tx_50m.parquet"
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "generate.py"), str(data), "--transactions", "55600000"],
            check=True,
            capture_output=True,
        )
        config = Path(tmp) / "bench50m.yaml"
        config.write_text(
            f"name: bench50m\ndata:\n  source: {data}\n  quantity_col: quantity\n  engine: duckdb\n"
            "calibration_end: 2023-06-30\nobservation_end: 2023-12-21\ntime_unit: weeks\nhorizon_days: 90\n"
            f"out: {tmp}/predictions.parquet\nmodels_dir: {tmp}/models\ntracking_uri: sqlite:///{tmp}/mlflow.db\n"
        )
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([CLI, "train", "--config", str(config), "--quiet"], cwd=tmp, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(data).metadata.num_rows
        customers = pq.ParquetFile(Path(tmp) / "predictions.parquet").metadata.num_rows
        stages = _stage_times(f"sqlite:///{tmp}/mlflow.db", "bench50m")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "rows": f"{rows:,} transactions, {customers:,} customers",
        "ours": statistics.median(times),
        "reference": None,
        "peak_mb": peak,
        "note": f"churn (trained and tested on a 25,000-customer sample, every customer scored) and analyses on; "
        f"targets < 300 s, < 8,000 MB; runs {', '.join(f'{t:.0f}' for t in times)} s; stages {stages}; "
        "generated by bench/generate.py (not timed)",
    }


def _stage_times(tracking_uri: str, experiment_name: str, digits: int = 0, at_least: float = 1.0) -> str:
    """``load 56, features 17, ...`` (seconds) from the last run's ``time.<stage>_s`` metrics."""
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    run = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    metrics = run.data.metrics
    return ", ".join(
        f"{k[5:-2]} {v:.{digits}f}"
        for k, v in sorted(metrics.items(), key=lambda kv: -kv[1])
        if k.startswith("time.") and k.endswith("_s") and v >= at_least
    )


def case_train(repeats: int) -> dict:
    return _train(repeats, [], "20 s")


def case_train_no_churn(repeats: int) -> dict:
    return _train(repeats, ["--no-churn"], "30 s")


CASES = {
    "rfm": ("RFM summary (pandas path)", "`lifetimes.utils.summary_data_from_transaction_data`", case_rfm),
    "rfm_5m": (
        "RFM summary (DuckDB engine, from Parquet)",
        "`lifetimes.utils.summary_data_from_transaction_data`",
        case_rfm_5m,
    ),
    "fit": ("BG/NBD fit", "lifetimes `BetaGeoFitter.fit` on raw rows", case_fit),
    "paretonbd": ("Pareto/NBD fit", "lifetimes `ParetoNBDFitter.fit` on raw rows", case_paretonbd),
    "covariates": ("BG/NBD fit with covariates", "—", lambda repeats: _covariate_case("bgnbd", repeats)),
    "covariates_paretonbd": ("Pareto/NBD fit with covariates", "—", lambda repeats: _covariate_case("paretonbd", 1)),
    "fit_gg": ("Gamma-Gamma fit", "lifetimes `GammaGammaFitter.fit`", case_fit_gg),
    "fit_gg_covariates": ("Gamma-Gamma fit with spend covariates", "—", case_fit_gg_covariates),
    "score": ("scoring: p_alive, expected purchases, spend, CLV", "lifetimes' methods one after another", case_score),
    "train": ("`crmvalue train` on CDNOW master, end to end (`make train`)", "—", case_train),
    "train_no_churn": ("the same with `--no-churn` (value model and CRM analyses)", "—", case_train_no_churn),
    "train_50m": ("`crmvalue train`, 50 M transactions, end to end", "—", case_train_50m),
}
ONCE = {"train_50m", "covariates_paretonbd"}  # minutes a run on 2 cores: measured once


def run_case(name: str, repeats: int) -> None:
    warnings.simplefilter("ignore")
    result = CASES[name][2](repeats)
    result.setdefault("peak_mb", _peak_mb())
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.md")
    parser.add_argument("--case", choices=list(CASES))
    args = parser.parse_args()
    if args.case:
        run_case(args.case, args.repeats)
        return

    rows = []
    for name, (work, reference, _) in CASES.items():
        print(f"bench: {work} ...", file=sys.stderr, flush=True)
        repeats = 1 if name in ONCE else args.repeats
        out = subprocess.run(
            [sys.executable, __file__, "--case", name, "--repeats", str(repeats)],
            check=True,
            capture_output=True,
            text=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        ratio = f"{r['reference'] / r['ours']:.1f}× faster" if r["reference"] else "—"
        ref_time = f"{r['reference']:.2f} s" if r["reference"] else "—"
        rows.append(
            f"| {work} | {r['rows']} | {r['ours']:.2f} s | {reference} | {ref_time} | {ratio} | "
            f"{r['peak_mb']:,.0f} MB | {r['note']} |"
        )
        print(f"  {rows[-1]}", file=sys.stderr, flush=True)

    header = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` (`bench/run.py --repeats {args.repeats}`) on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}. "
        "Times are medians over the repeats; the reference is measured in the same run. "
        "Peak memory is the peak RSS of the process running the case, data generation included.",
        "",
        "| work | rows | crmvalue | reference | reference time | ratio | peak memory | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    args.out.write_text("\n".join(header + rows) + "\n")
    print(f"bench: wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
