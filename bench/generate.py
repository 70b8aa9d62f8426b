"""Write a large synthetic transaction log as Parquet, block by block, for the scale benchmark.

    python bench/generate.py /tmp/tx_50m.parquet --customers 5000000 --transactions 50000000

Customers are drawn a block at a time (``--block`` customers) and each block is written as its
own row group, so memory stays at one block (~0.5 GB at the default) whatever the size. Purchases follow BG/NBD,
so the value models fit. The log has what real ones have and the pandas path must agree with: text ids with leading zeros,
timestamps with a time of day, same-day repeats, returns (negative amounts, some on days of
their own), zero amounts, a quantity, and 10 days of rows after the observation end the
benchmark config uses (2023-12-21). Rows are shuffled within a block, so a customer's
same-day rows are not adjacent. Never write the output inside the repository.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

START = np.datetime64("2022-01-01", "us")
SPAN_DAYS = 730  # 2022-01-01 .. 2023-12-31
ACQUISITION_DAYS = 365
MICROS_PER_DAY = 86_400 * 1_000_000
R, A, B = 1.2, 1.5, 12.0  # BG/NBD heterogeneity; alpha (per day) is set from the rows wanted per customer
ALPHA_AT_10 = 34.0  # about 10 rows per customer (same-day repeats included)
MAX_REPEATS = 400


def block_table(first_id: int, customers: int, alpha: float, rng: np.random.Generator) -> pa.Table:
    """The transactions of ``customers`` customers numbered from ``first_id``."""
    # BG/NBD while alive: Poisson purchases at rate lam ~ Gamma(r, 1/alpha) per day, and after each
    # repeat purchase a dropout with probability p ~ Beta(a, b), so the value models have their shape
    lam = rng.gamma(R, 1.0 / alpha, size=customers)
    dropout = rng.beta(A, B, size=customers)
    first_day = rng.integers(0, ACQUISITION_DAYS, size=customers)
    repeats = np.minimum(rng.geometric(dropout), MAX_REPEATS)  # the repeat purchase after which they drop out
    owner = np.repeat(np.arange(customers), repeats)
    elapsed = np.cumsum(rng.exponential(1.0, size=owner.size) / lam[owner])
    before = np.r_[0.0, elapsed][np.r_[0, np.cumsum(repeats)][:-1]]  # each customer's offset in the cumsum
    elapsed -= np.repeat(before, repeats)
    inside = elapsed < (SPAN_DAYS - first_day)[owner]
    owner = np.r_[np.arange(customers), owner[inside]]
    day = np.r_[first_day, first_day[owner[customers:]] + elapsed[inside].astype(np.int64)]
    # 5% of rows get a same-day repeat
    repeat = rng.random(owner.size) < 0.05
    owner, day = np.r_[owner, owner[repeat]], np.r_[day, day[repeat]]
    n = owner.size
    amount = np.round(rng.gamma(2.0, 25.0, size=n), 2)
    kind = rng.random(n)
    amount[kind < 0.02] *= -1.0  # returns
    amount[(kind >= 0.02) & (kind < 0.025)] = 0.0  # free items
    quantity = 1 + rng.poisson(1.0, size=n).astype(np.int32)
    stamp = START + (day * MICROS_PER_DAY + rng.integers(0, MICROS_PER_DAY, size=n)).astype("timedelta64[us]")
    order = rng.permutation(n)
    ids = pa.array([f"C{i:08d}" for i in range(first_id, first_id + customers)], pa.string())
    return pa.table(
        {
            "customer_id": pa.DictionaryArray.from_arrays(pa.array(owner[order].astype(np.int32)), ids),
            "date": pa.array(stamp[order], pa.timestamp("us")),
            "amount": pa.array(amount[order]),
            "quantity": pa.array(quantity[order]),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--customers", type=int, default=5_000_000)
    parser.add_argument("--transactions", type=int, default=50_000_000, help="about this many rows in all")
    parser.add_argument("--block", type=int, default=250_000, help="customers per row group")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    # purchases grow roughly as the rate 1/alpha while the dropout keeps them bounded: a rough scale
    alpha = ALPHA_AT_10 * 10.0 / (args.transactions / args.customers)
    rng = np.random.default_rng(args.seed)
    start, rows = time.perf_counter(), 0
    writer = None
    try:
        for first in range(0, args.customers, args.block):
            table = block_table(first, min(args.block, args.customers - first), alpha, rng)
            if writer is None:
                writer = pq.ParquetWriter(args.out, table.schema, compression="zstd")
            writer.write_table(table, row_group_size=table.num_rows)
            rows += table.num_rows
            print(f"\r{rows:,} rows, {first + table.num_rows:,} customers", end="", flush=True)
    finally:
        if writer is not None:
            writer.close()
    print(f"\nwrote {args.out} ({args.out.stat().st_size / 2**20:,.0f} MB) in {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
