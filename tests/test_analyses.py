"""CRM analyses (seeds 000, 003, 004) on hand-computed cases, a property test and the CDNOW sample."""

from __future__ import annotations

import logging

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from crmvalue import analyses as an
from crmvalue import plots
from crmvalue.analyses import (
    CPM_LABELS,
    DEFAULT_RFM_SEGMENTS,
    CpmConfig,
    CrmValueConfig,
    RfmConfig,
    cohort_retention,
    cpm_groups,
    cpm_table,
    cpm_thresholds,
    crm_components,
    crm_value_score,
    customer_measures,
    customer_rfm,
    decile_table,
    interaction_score,
    load_interactions,
    loyalty_score,
    pareto_share,
    purchase_score,
    retention_table,
    rfm_scores,
    rfm_segment_lookup,
    rfm_segment_table,
    satisfaction_score,
    segment_table,
    value_deciles,
)
from crmvalue.errors import CrmvalueError
from crmvalue.features import rfm_summary


def _log(rows, quantity=False) -> pd.DataFrame:
    columns = ["customer_id", "date", "amount"] + (["quantity"] if quantity else [])
    frame = pd.DataFrame(rows, columns=columns)
    frame["date"] = pd.to_datetime(frame["date"], format="ISO8601")
    return frame


# --- customer measures -----------------------------------------------------------------------


def _measures_log(quantity=True) -> pd.DataFrame:
    rows = [
        ("a", "2020-01-01 09:00", 10.0, 1.0),
        ("a", "2020-01-01 17:00", 5.0, 1.0),  # same day: one order of 15
        ("a", "2020-01-11", 20.0, 2.0),
        ("a", "2020-01-31", -5.0, -1.0),  # a return on a day of its own: not an order, but it nets sales
        ("a", "2020-02-10", 30.0, 3.0),
        ("a", "2020-03-05", 100.0, 1.0),  # after the observation end
        ("b", "2020-02-01", 50.0, 5.0),
        ("c", "2020-03-02", 70.0, 1.0),  # only after the end: absent
    ]
    log = _log(rows, quantity=True)
    return log if quantity else log.drop(columns="quantity")


def test_customer_measures_by_hand():
    m = customer_measures(_measures_log(), "2020-03-01")
    assert list(m.index) == ["a", "b"]
    a, b = m.loc["a"], m.loc["b"]
    assert (a["orders"], a["total_sales"], a["avg_unit_price"]) == (3, 60.0, 10.0)  # 60 / 6 units
    assert (a["first_purchase"], a["last_purchase"]) == (pd.Timestamp("2020-01-01"), pd.Timestamp("2020-02-10"))
    assert (a["span_days"], a["inactivity_days"], a["median_gap_days"]) == (40, 20, 20.0)  # gaps 10, 30; leap year
    assert (b["orders"], b["total_sales"], b["avg_unit_price"], b["span_days"], b["inactivity_days"]) == (
        1,
        50.0,
        10.0,
        0,
        29,
    )
    assert np.isnan(b["median_gap_days"])


def test_unit_price_is_the_average_order_value_without_quantities():
    m = customer_measures(_measures_log(quantity=False), "2020-03-01")
    assert m["avg_unit_price"].tolist() == [20.0, 50.0]


def test_measures_agree_with_the_rfm_summary(small_transactions):
    end = "2020-10-31"
    m = customer_measures(small_transactions, end)
    s = rfm_summary(small_transactions, end, "days")
    assert m.index.equals(s.index)
    np.testing.assert_array_equal(m["orders"] - 1, s["frequency"])
    np.testing.assert_array_equal(m["span_days"], s["recency"])
    np.testing.assert_array_equal(m["inactivity_days"], s["T"] - s["recency"])


# --- RFM --------------------------------------------------------------------------------------


def test_rfm_scores_by_hand():
    ids = pd.Index(list("abcde"), name="customer_id")
    rfm = rfm_scores(
        pd.Series([1, 2, 3, 4, 5], index=ids),  # days since last purchase: a most recent
        pd.Series([10, 8, 6, 4, 2], index=ids),
        pd.Series([5.0, 1.0, 4.0, 2.0, 3.0], index=ids),
    )
    assert rfm["rfm_score"].tolist() == ["555", "441", "334", "222", "113"]
    assert rfm["rfm_total"].tolist() == [15, 9, 10, 6, 5]
    assert rfm["rfm_segment"].tolist() == ["champions", "loyal", "need attention", "hibernating", "lost"]
    assert rfm.index.equals(ids)


def test_ten_customers_make_five_pairs():
    rfm = rfm_scores(np.arange(10), np.arange(10), np.arange(10))
    assert rfm["rfm_f"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert rfm["rfm_r"].tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]


def test_ties_get_equal_scores_when_most_frequencies_are_zero():
    frequency = [0, 0, 0, 0, 0, 0, 0, 1, 2, 3]
    rfm = rfm_scores(np.arange(10), frequency, np.ones(10))
    # the zeros beat nobody: F = 1; frequency 1 beats 7 of 10: 1 + floor(3.5) = 4
    assert rfm["rfm_f"].tolist() == [1] * 7 + [4, 5, 5]
    assert rfm["rfm_m"].tolist() == [1] * 10  # all equal: one score, no error
    # the recent one-time buyers are "new", the others by recency
    assert rfm["rfm_segment"].tolist()[:2] == ["new", "new"]


def test_rfm_on_the_summary_and_raw_bases():
    summary = pd.DataFrame(
        {
            "customer_id": ["x", "y"],
            "frequency": [0.0, 3.0],
            "recency": [0.0, 10.0],
            "T": [30.0, 12.0],
            "monetary_value": [0.0, 25.0],
        }
    )
    rfm = customer_rfm(summary)  # x: 30 since the last purchase, y: 2
    assert rfm.loc["x", "rfm_score"] == "111" and rfm.loc["y", "rfm_score"] == "333"
    measures = pd.DataFrame(
        {"inactivity_days": [5, 50], "orders": [1, 4], "total_sales": [80.0, 20.0]}, index=["x", "y"]
    )
    raw = customer_rfm(measures, RfmConfig(basis="raw"))
    assert raw["rfm_score"].tolist() == ["313", "131"]
    with pytest.raises(CrmvalueError, match="raw basis: missing column 'orders'"):
        customer_rfm(measures.drop(columns="orders"), RfmConfig(basis="raw"))


def test_every_score_combination_has_exactly_one_default_segment():
    lookup, names = rfm_segment_lookup(DEFAULT_RFM_SEGMENTS)
    assert lookup.shape == (125,)
    assert {
        "champions",
        "loyal",
        "potential loyalists",
        "new",
        "promising",
        "need attention",
        "at risk",
        "can't lose",
        "hibernating",
        "lost",
    } <= set(np.asarray(names)[lookup])


def test_a_segment_mapping_with_a_gap_or_an_overlap_is_refused():
    rules = [{"name": "recent", "r": (3, 5)}, {"name": "old", "r": (1, 2)}]
    assert RfmConfig(segments=rules).segments[0].name == "recent"
    with pytest.raises(ValidationError, match="RFM score 311 is in several segments"):
        RfmConfig(segments=rules + [{"name": "again", "r": (3, 3)}])
    with pytest.raises(CrmvalueError, match="RFM score 111 is in no segment"):
        rfm_scores([1], [1], [1], segments=rules[:1])
    with pytest.raises(ValidationError, match="1 <= low <= high <= 5"):
        RfmConfig(segments=[{"name": "bad", "r": (0, 5)}])
    with pytest.raises(ValidationError):
        RfmConfig(basis="raw", segmnets=[])  # misspelt key


def test_rfm_segment_table_lists_every_segment():
    rfm = rfm_scores(np.arange(5), np.arange(5)[::-1], np.arange(5))
    table = rfm_segment_table(rfm)
    assert list(table.index) == [rule.name for rule in DEFAULT_RFM_SEGMENTS]
    assert table["customers"].sum() == 5 and table.loc["new", "customers"] == 0
    assert table["share"].sum() == pytest.approx(1.0)


# --- CPM --------------------------------------------------------------------------------------

HAND_CPM = CpmConfig(
    lapse_factor=2,
    lapse_floor_days=180,
    active_min_orders=4,
    stable_sales=100,
    loyal_sales=500,
    loyal_min_span_days=365,
)


def _cpm_customers() -> pd.DataFrame:
    # orders, total_sales, span_days, inactivity_days, median_gap_days; the customer id is the expected group
    rows = {
        "g01": (1, 20.0, 0, 30, np.nan),
        "g02": (2, 50.0, 20, 30, 20.0),
        "g03": (5, 80.0, 100, 10, 25.0),
        "g04": (3, 200.0, 60, 10, 30.0),
        "g05": (6, 800.0, 400, 20, 80.0),
        "g06": (1, 20.0, 0, 200, np.nan),
        "g07": (2, 50.0, 20, 181, 20.0),  # just past the 180-day floor
        "g08": (5, 80.0, 100, 300, 25.0),
        "g09": (3, 200.0, 60, 250, 30.0),
        "g10": (6, 800.0, 400, 250, 100.0),  # 250 > max(2 x 100, 180)
    }
    return pd.DataFrame.from_dict(
        rows, orient="index", columns=["orders", "total_sales", "span_days", "inactivity_days", "median_gap_days"]
    )


def test_one_hand_made_customer_per_cpm_group():
    groups = cpm_groups(_cpm_customers(), HAND_CPM)
    assert groups["cpm_group"].tolist() == list(range(1, 11))
    assert groups["cpm_label"].tolist() == list(CPM_LABELS.values())
    assert groups.attrs["thresholds"] == {"stable_sales": 100.0, "loyal_sales": 500.0}


def test_lapse_is_relative_to_the_customers_own_rhythm():
    m = pd.DataFrame(
        {
            "orders": [3, 3, 3, 1, 1],
            "total_sales": [10.0] * 5,
            "span_days": [300, 300, 300, 0, 0],
            "inactivity_days": [250, 301, 180, 180, 181],
            "median_gap_days": [150.0, 150.0, 10.0, np.nan, np.nan],
        },
        index=list("abcde"),
    )
    # a: 250 <= 2 x 150; b: 301 > 300; c: exactly the floor is not past it; d, e: one order, the floor alone
    assert cpm_groups(m, HAND_CPM)["cpm_group"].tolist() == [2, 7, 2, 1, 6]


def test_a_one_order_big_spender_is_new_and_a_long_span_needs_the_loyal_amount():
    m = pd.DataFrame(
        {
            "orders": [1, 2, 2],
            "total_sales": [10_000.0, 300.0, 300.0],
            "span_days": [0, 400, 364],
            "inactivity_days": [5, 5, 5],
            "median_gap_days": [np.nan, 400.0, 364.0],
        },
        index=list("abc"),
    )
    # b: long span, below loyal_sales, above stable_sales but not in a short time: somewhat active
    assert cpm_groups(m, HAND_CPM)["cpm_group"].tolist() == [1, 2, 4]


def test_default_sales_thresholds_are_quantiles_of_total_sales():
    m = _cpm_customers()
    assert cpm_thresholds(m) == {
        "stable_sales": m["total_sales"].quantile(0.75),
        "loyal_sales": m["total_sales"].quantile(0.75),
    }
    assert cpm_thresholds(m, CpmConfig(loyal_sales=1.0, stable_sales_quantile=0.5))["stable_sales"] == 80.0


def test_cpm_table_lists_all_ten_groups():
    m = _cpm_customers().iloc[:4]
    table = cpm_table(m, cpm_groups(m, HAND_CPM))
    assert list(table.index) == list(range(1, 11))
    assert table["customers"].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert table.loc[4, "sales_share"] == pytest.approx(200 / 350)
    assert table.loc[10, "cpm_label"] == "important retention"


@st.composite
def _measures(draw):
    n = draw(st.integers(1, 40))
    orders = np.array(draw(st.lists(st.integers(1, 12), min_size=n, max_size=n)))
    sales = draw(st.lists(st.floats(-500, 5000, allow_nan=False), min_size=n, max_size=n))
    span = np.array(draw(st.lists(st.integers(0, 900), min_size=n, max_size=n)))
    gap = np.array(draw(st.lists(st.floats(1, 400), min_size=n, max_size=n)))
    inactivity = draw(st.lists(st.integers(0, 900), min_size=n, max_size=n))
    one = orders == 1
    return pd.DataFrame(
        {
            "orders": orders,
            "total_sales": sales,
            "span_days": np.where(one, 0, span),
            "inactivity_days": inactivity,
            "median_gap_days": np.where(one, np.nan, gap),
        },
        index=[f"c{i}" for i in range(n)],
    )


_cpm_configs = st.builds(
    CpmConfig,
    lapse_factor=st.floats(0.5, 5),
    lapse_floor_days=st.integers(0, 400),
    active_min_orders=st.integers(2, 8),
    stable_sales=st.one_of(st.none(), st.floats(-100, 3000)),
    loyal_sales=st.one_of(st.none(), st.floats(-100, 3000)),
    loyal_min_span_days=st.integers(1, 800),
)


@settings(max_examples=150, deadline=None)
@given(_measures(), _cpm_configs)
def test_every_customer_lands_in_exactly_one_cpm_group(measures, cfg):
    groups = cpm_groups(measures, cfg)
    assert groups.index.equals(measures.index)
    assert groups["cpm_group"].between(1, 10).all()
    assert (groups["cpm_label"] == groups["cpm_group"].map(CPM_LABELS)).all()
    limit = np.fmax(cfg.lapse_factor * measures["median_gap_days"], cfg.lapse_floor_days)
    assert ((groups["cpm_group"] > 5) == (measures["inactivity_days"] > limit)).all()
    assert ((groups["cpm_group"] % 5 == 1) == (measures["orders"] == 1)).all()


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 3), st.floats(0, 100, allow_nan=False)), min_size=1, max_size=60
    )
)
def test_every_rfm_score_maps_to_a_segment_and_ties_score_alike(rows):
    recency, frequency, monetary = (np.array(c) for c in zip(*rows))
    rfm = rfm_scores(recency, frequency, monetary)
    for column in ("rfm_r", "rfm_f", "rfm_m"):
        assert rfm[column].between(1, 5).all()
    assert rfm["rfm_segment"].notna().all() and len(rfm) == len(rows)
    for values, column in ((recency, "rfm_r"), (frequency, "rfm_f"), (monetary, "rfm_m")):
        assert (rfm.groupby(values)[column].nunique() == 1).all()
    # more recent never scores lower
    order = np.argsort(recency, kind="stable")
    assert (np.diff(rfm["rfm_r"].to_numpy()[order]) <= 0).all()


# --- deciles and Pareto -----------------------------------------------------------------------


def _decile_customers():
    # e and f tie at 5; f is listed first, but the tie is split by id
    revenue = pd.Series([100.0, 50.0, 20.0, 10.0, 5.0, 5.0, 4.0, 3.0, 2.0, 1.0], index=list("abcdfeghij"))
    orders = pd.Series([4, 2, 2, 1, 1, 1, 1, 1, 1, 1], index=revenue.index)
    return revenue, orders


def test_value_deciles_by_hand_with_ties():
    revenue, _ = _decile_customers()
    deciles = value_deciles(revenue)
    assert deciles.to_dict() == {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7, "h": 8, "i": 9, "j": 10}
    twenty = pd.Series(1.0, index=[f"c{i:02d}" for i in range(19, -1, -1)])  # all tied
    assert value_deciles(twenty).sort_index().tolist() == [d for d in range(1, 11) for _ in range(2)]


def test_value_deciles_with_fewer_than_ten_customers():
    assert value_deciles(pd.Series([3.0, 1.0, 2.0], index=list("abc"))).tolist() == [1, 7, 4]
    assert value_deciles(pd.Series([7.0], index=["z"])).tolist() == [1]
    sizes = value_deciles(pd.Series(np.arange(15.0))).value_counts()
    assert sorted(sizes.tolist()) == [1] * 5 + [2] * 5


def test_decile_table_by_hand():
    revenue, orders = _decile_customers()
    table = decile_table(revenue, orders)
    assert table["customers"].tolist() == [1] * 10
    assert table["revenue_share"].tolist()[:3] == pytest.approx([0.5, 0.25, 0.1])
    assert table["cumulative_share"].tolist()[:3] == pytest.approx([0.5, 0.75, 0.85])
    assert table["cumulative_share"].iloc[-1] == pytest.approx(1.0)
    assert table["average_order_value"].tolist()[:3] == [25.0, 25.0, 10.0]
    assert table["average_frequency"].tolist()[:3] == [4.0, 2.0, 2.0]
    few = decile_table(revenue.iloc[:3], orders.iloc[:3])  # deciles 1, 4, 7; the rest empty
    assert few["customers"].tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 0, 0]
    assert np.isnan(few.loc[2, "average_order_value"])


def test_pareto_share_by_hand():
    revenue, _ = _decile_customers()
    assert pareto_share(revenue) == pytest.approx(150 / 200)
    assert pareto_share(revenue, top=0.25) == pytest.approx(160 / 200)  # 2.5 customers: half of c's 20
    assert pareto_share(revenue, top=1.0) == pytest.approx(1.0)
    assert np.isnan(pareto_share(pd.Series([0.0, 0.0])))
    with pytest.raises(CrmvalueError, match="top must be a fraction"):
        pareto_share(revenue, top=20)


# --- CRM value score --------------------------------------------------------------------------

SEED_000 = pd.DataFrame({"interaction": [80.0], "purchase": [90.0], "satisfaction": [85.0], "loyalty": [75.0]})


def test_crm_value_of_the_seed_example():
    # seed 000: 0.2*80 + 0.4*90 + 0.2*85 + 0.2*75 = 16 + 36 + 17 + 15 = 84; the seed prints 83, an arithmetic slip
    score = crm_value_score(SEED_000, {"interaction": 0.2, "purchase": 0.4, "satisfaction": 0.2, "loyalty": 0.2})
    assert score["crm_value"].iloc[0] == 84.0
    assert score["crm_grade"].iloc[0] == "high"
    assert crm_value_score(SEED_000)["crm_value"].iloc[0] == 84.0  # the seed's weights are the default


@pytest.mark.parametrize("missing", ["absent", "all NaN"])
def test_a_missing_component_is_dropped_and_the_weights_renormalised(missing, caplog):
    components = SEED_000.drop(columns="satisfaction") if missing == "absent" else SEED_000.assign(satisfaction=np.nan)
    with caplog.at_level(logging.WARNING, logger="crmvalue"):
        score = crm_value_score(components)
    assert score["crm_value"].iloc[0] == pytest.approx((0.2 * 80 + 0.4 * 90 + 0.2 * 75) / 0.8)  # 83.75
    assert "no satisfaction score" in caplog.text and "purchase 0.5" in caplog.text


def test_a_customer_missing_a_component_is_renormalised_alone(caplog):
    components = pd.concat([SEED_000, SEED_000.assign(satisfaction=np.nan)], ignore_index=True)
    with caplog.at_level(logging.WARNING, logger="crmvalue"):
        score = crm_value_score(components)
    assert score["crm_value"].tolist() == pytest.approx([84.0, 83.75])
    assert "1 of 2 customers miss a component" in caplog.text


def test_crm_grades_and_bad_weights():
    components = pd.DataFrame({"purchase": [70.0, 69.9, 40.0, 39.9]})
    assert crm_value_score(components, grades=(70, 40))["crm_grade"].tolist() == ["high", "medium", "medium", "low"]
    with pytest.raises(CrmvalueError, match="unknown CRM value component price"):
        crm_value_score(components, {"price": 1.0})
    with pytest.raises(CrmvalueError, match="between 0 and 100"):
        crm_value_score(components * 2)
    with pytest.raises(CrmvalueError, match="none of the components"):
        crm_value_score(components, {"loyalty": 1.0})
    with pytest.raises(ValidationError):
        CrmValueConfig(weights={"purchase": -1.0})


def test_component_scores_by_hand(caplog):
    assert purchase_score(pd.Series([10.0, 20.0, 30.0, 40.0])).tolist() == [12.5, 37.5, 62.5, 87.5]
    assert purchase_score(pd.Series([5.0, 5.0])).tolist() == [50.0, 50.0]
    m = pd.DataFrame({"orders": [1, 3, 3], "span_days": [0, 10, 100]}, index=list("abc"))
    # repeats 0, 2, 2 -> 16.67, 66.67, 66.67; spans -> 16.67, 50, 83.33
    assert loyalty_score(m).tolist() == pytest.approx([100 / 6, 350 / 6, 450 / 6])
    assert satisfaction_score(pd.Series([1.0, 3.0, 5.0])).tolist() == [0.0, 50.0, 100.0]
    assert satisfaction_score(pd.Series([5.0, 5.0]), scale=(1, 5)).tolist() == [100.0, 100.0]
    assert satisfaction_score(pd.Series([4.0, 4.0])).isna().all()  # no spread, no scale: no information
    partial = satisfaction_score(pd.Series([1.0, 2.0], index=["a", "b"]), customers=pd.Index(["a", "b", "c"]))
    assert partial.tolist()[:2] == [0.0, 100.0] and np.isnan(partial["c"])
    interactions = pd.DataFrame({"customer_id": ["a", "a", "a", "b"], "date": pd.to_datetime(["2020-01-01"] * 4)})
    assert interaction_score(pd.Index(["a", "b", "c"]), interactions).tolist() == pytest.approx([500 / 6, 50, 100 / 6])
    with caplog.at_level(logging.WARNING, logger="crmvalue"):
        fallback = interaction_score(pd.Index(["a", "b"]), orders=pd.Series([1, 4], index=["a", "b"]))
    assert fallback.tolist() == [25.0, 75.0] and "purchase frequency" in caplog.text


def test_load_interactions(tmp_path):
    path = tmp_path / "touch.csv"
    path.write_text("cid,when,channel\n007,2020-01-02,email\n12,2020-01-03,\n")
    table = load_interactions(path, id_col="cid", date_col="when")
    assert table["customer_id"].tolist() == ["007", "12"]
    assert table["channel"].tolist() == ["email", "unknown"]
    assert table["date"].dtype == "datetime64[ns]"


@pytest.mark.parametrize(
    "text, message",
    [
        ("customer_id,date\n1,2020-01-01\n", "missing column 'channel'; the columns are customer_id, date"),
        ("customer_id,date,channel\n1,yesterday,web\n", "column 'date' has 1 unparseable timestamps; first at line 2"),
        (
            "customer_id,date,channel\n1,2020-01-01,web\n,2020-01-02,web\n",
            "column 'customer_id' has 1 missing ids; first at line 3",
        ),
        ("customer_id,date,channel\n", "no data rows"),
    ],
)
def test_interactions_loader_errors(tmp_path, text, message):
    path = tmp_path / "touch.csv"
    path.write_text(text)
    with pytest.raises(CrmvalueError, match=message) as error:
        load_interactions(path)
    assert "\n" not in str(error.value)


def test_interactions_loader_errors_without_a_file(tmp_path):
    with pytest.raises(CrmvalueError, match="no such file"):
        load_interactions(tmp_path / "nope.csv")
    with pytest.raises(CrmvalueError, match=r"DataFrame\): missing column 'date'"):
        load_interactions(pd.DataFrame({"customer_id": ["a"], "channel": ["web"]}))


# --- retention and cohorts --------------------------------------------------------------------


def _retention_log() -> pd.DataFrame:
    return _log(
        [
            ("a", "2020-01-05", 10.0),
            ("a", "2020-02-10", 20.0),
            ("a", "2020-03-15", 30.0),
            ("b", "2020-01-20", 40.0),
            ("b", "2020-01-25", 60.0),
            ("b", "2020-03-01", 50.0),
            ("c", "2020-02-03", 100.0),
            ("d", "2020-05-01", 25.0),  # after an empty April
        ]
    )


def test_monthly_retention_by_hand():
    table = retention_table(_retention_log(), "M")
    assert [str(p) for p in table.index] == ["2020-01", "2020-02", "2020-03", "2020-04", "2020-05"]
    assert table["active_customers"].tolist() == [2, 2, 2, 0, 1]
    assert table["new_customers"].tolist() == [2, 1, 0, 0, 1]
    # Feb: of Jan's {a, b} only a; Mar: of Feb's {a, c} only a; Apr: nobody of Mar's {a, b}; May: no April buyers
    np.testing.assert_allclose(table["retention_rate"], [np.nan, 0.5, 0.5, 0.0, np.nan])
    np.testing.assert_allclose(table["orders_per_customer_per_year"], [18.0, 12.0, 12.0, np.nan, 12.0])
    np.testing.assert_allclose(table["average_order_value"], [110 / 3, 60.0, 40.0, np.nan, 25.0])


def test_quarterly_retention_by_hand():
    table = retention_table(_retention_log(), "Q")
    assert [str(p) for p in table.index] == ["2020Q1", "2020Q2"]
    assert table["active_customers"].tolist() == [3, 1]
    np.testing.assert_allclose(table["retention_rate"], [np.nan, 0.0])
    assert table["orders_per_customer_per_year"].iloc[0] == pytest.approx(7 / 3 * 4)
    with pytest.raises(CrmvalueError, match="period must be 'M'"):
        retention_table(_retention_log(), "W")


def test_cohort_matrix_by_hand():
    matrix = cohort_retention(_retention_log(), "M")
    assert [str(p) for p in matrix.index] == ["2020-01", "2020-02", "2020-05"]  # no one acquired in Mar or Apr
    assert list(matrix.columns) == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(matrix.loc["2020-01"], [1.0, 0.5, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(matrix.loc["2020-02"], [1.0, 0.0, 0.0, 0.0, np.nan])  # June not observed
    np.testing.assert_allclose(matrix.loc["2020-05"], [1.0, np.nan, np.nan, np.nan, np.nan])
    assert cohort_retention(_retention_log(), counts=True)[0].tolist() == [2.0, 1.0, 1.0]


# --- market segmentation ----------------------------------------------------------------------


def _predictions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": list("abcdef"),
            "frequency": [0.0, 2.0, 1.0, 0.0, 3.0, 0.0],
            "clv": [10.0, 50.0, 30.0, 5.0, 100.0, 0.0],
            "current_value": [0.0, 100.0, 50.0, 0.0, 200.0, 50.0],
            "churn_probability": [0.9, 0.2, 0.5, 0.8, 0.1, 0.7],
        }
    )


def test_segment_table_by_hand():
    attributes = pd.DataFrame({"region": ["north", "north", "south", "south", "south"]}, index=list("abcde"))
    table = segment_table(_predictions(), attributes, "region")
    assert list(table.index) == ["north", "south", "(missing)"]  # f has no row
    assert table["customers"].tolist() == [2, 3, 1]
    assert table["repeat_purchase_rate"].tolist() == pytest.approx([0.5, 2 / 3, 0.0])
    assert table["mean_clv"].tolist() == pytest.approx([30.0, 45.0, 0.0])
    assert table["mean_churn_probability"].tolist() == pytest.approx([0.55, 1.4 / 3, 0.7])
    assert table["revenue_share"].tolist() == pytest.approx([100 / 400, 250 / 400, 50 / 400])
    by_total = segment_table(
        _predictions().drop(columns="churn_probability"),
        attributes,
        "region",
        revenue=pd.Series([1.0, 1.0, 1.0, 1.0], index=list("abcd")),
    )
    assert "mean_churn_probability" not in by_total.columns
    assert by_total["revenue_share"].tolist() == pytest.approx([0.5, 0.5, 0.0])
    with pytest.raises(CrmvalueError, match="no attribute column 'age'"):
        segment_table(_predictions(), attributes, "age")


def test_a_numeric_attribute_is_cut_into_quartiles_in_order():
    predictions = pd.DataFrame(
        {"frequency": np.arange(12.0), "clv": 1.0, "current_value": 1.0},
        index=pd.Index([f"c{i:02d}" for i in range(12)], name="customer_id"),
    )
    attributes = pd.DataFrame({"age": [95, 96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106]}, index=predictions.index)
    table = segment_table(predictions, attributes, "age", max_levels=10)
    assert table["customers"].tolist() == [3, 3, 3, 3]
    assert table.index[0].startswith("(94.") and table.index[-1].endswith("106.0]")  # by age, not as text
    assert table["repeat_purchase_rate"].tolist() == pytest.approx([2 / 3, 1, 1, 1])


# --- charts -----------------------------------------------------------------------------------


def test_charts_return_figures_with_their_bars_and_lines():
    revenue, orders = _decile_customers()
    fig = plots.decile_chart(decile_table(revenue, orders))
    assert len(fig.axes[0].patches) == 10 and len(fig.axes[1].lines) == 1
    plt.close(fig)
    fig = plots.cohort_heatmap(cohort_retention(_retention_log()))
    assert len(fig.axes[0].images) == 1
    plt.close(fig)
    table = rfm_segment_table(rfm_scores(np.arange(5), np.arange(5), np.arange(5)))
    fig = plots.rfm_segment_chart(table)
    assert len(fig.axes[0].patches) == len(DEFAULT_RFM_SEGMENTS)
    plt.close(fig)
    m = _cpm_customers()
    fig = plots.cpm_group_chart(cpm_table(m, cpm_groups(m, HAND_CPM)))
    assert len(fig.axes[0].patches) == 10
    plt.close(fig)
    fig = plots.retention_chart(retention_table(_retention_log()))
    assert len(fig.axes[0].patches) == 5 and len(fig.axes[1].lines) == 1
    plt.close(fig)


# --- the CDNOW sample -------------------------------------------------------------------------


def test_every_analysis_runs_on_the_cdnow_sample(cdnow_sample):
    end = "1998-06-30"
    m = customer_measures(cdnow_sample, end)
    assert len(m) == 2357 and (m["orders"] >= 1).all()
    summary = rfm_summary(cdnow_sample, end, "weeks")
    for rfm in (customer_rfm(summary), customer_rfm(m, RfmConfig(basis="raw"))):
        assert rfm["rfm_segment"].notna().all() and len(rfm) == 2357
    groups = cpm_groups(m)
    assert groups["cpm_group"].between(1, 10).all()
    assert cpm_table(m, groups)["customers"].sum() == 2357
    deciles = decile_table(m)
    assert deciles["customers"].tolist() == [236, 236, 236, 235, 236, 236, 235, 236, 236, 235]
    assert deciles["cumulative_share"].iloc[-1] == pytest.approx(1.0)
    assert deciles["revenue_share"].is_monotonic_decreasing
    assert 0.5 < pareto_share(m["total_sales"]) < 0.9
    score = crm_value_score(crm_components(m))
    assert score["crm_value"].between(0, 100).all() and set(score["crm_grade"]) == {"high", "medium", "low"}
    retention = retention_table(cdnow_sample, "Q")
    assert retention.loc[pd.Period("1997Q1", "Q"), "active_customers"] == 2357  # every cohort is Q1 1997
    assert retention["retention_rate"].iloc[1:].between(0, 1).all()
    cohorts = cohort_retention(cdnow_sample)
    assert [str(p) for p in cohorts.index] == ["1997-01", "1997-02", "1997-03"]
    assert (cohorts[0] == 1.0).all() and (cohorts.iloc[:, 1:].stack().dropna() < 0.3).all()


def test_customers_who_last_bought_on_the_same_day_share_r_in_weeks(cdnow_sample):
    """T - recency in weeks carries float noise; it must not split a same-day group across a cut."""
    from crmvalue.features import rfm_summary

    summary = rfm_summary(cdnow_sample, "1998-06-30", "weeks")
    rfm = an.customer_rfm(summary, an.RfmConfig(basis="summary"))
    days = ((summary["T"] - summary["recency"]) * 7).round().astype(int)
    assert (rfm["rfm_r"].groupby(days).nunique() == 1).all()


def test_segment_table_counts_a_segment_spanning_two_rules_once():
    rules = [
        {"name": "good", "r": [4, 5]},
        {"name": "good", "r": [3, 3], "f": [3, 5]},
        {"name": "rest", "r": [3, 3], "f": [1, 2]},
        {"name": "rest", "r": [1, 2]},
    ]
    rfm = an.rfm_scores(
        pd.Series([1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
        pd.Series(np.arange(10.0)),
        pd.Series(np.arange(10.0)),
        [an.RfmSegmentRule(**r) for r in rules],
    )
    table = an.rfm_segment_table(rfm, [an.RfmSegmentRule(**r) for r in rules])
    assert list(table.index) == ["good", "rest"] and table["customers"].sum() == 10
    assert table["share"].sum() == pytest.approx(1.0)


def test_median_by_group_equals_pandas():
    """The sort-based per-customer median of the gaps against pandas' groupby median, ties and empty groups included."""
    from crmvalue.analyses import median_by_group as _median_by_group

    rng = np.random.default_rng(4)
    sizes = rng.integers(0, 7, 2000)
    group = np.repeat(np.arange(2000), sizes)
    values = rng.integers(0, 40, len(group))
    expected = pd.Series(values.astype(float)).groupby(group).median().reindex(np.arange(2000)).to_numpy()
    np.testing.assert_array_equal(_median_by_group(values, group, 2000), expected)
    assert np.isnan(_median_by_group(np.array([], int), np.array([], int), 3)).all()


def test_retention_tables_from_shared_customer_periods_equal_those_from_transactions(cdnow_sample):
    from crmvalue.analyses import customer_periods

    for period in ("M", "Q"):
        periods = customer_periods(cdnow_sample, period, "1998-06-30")
        pd.testing.assert_frame_equal(
            retention_table(periods, period), retention_table(cdnow_sample, period, "1998-06-30")
        )
        pd.testing.assert_frame_equal(
            cohort_retention(periods, period), cohort_retention(cdnow_sample, period, "1998-06-30")
        )
    with pytest.raises(CrmvalueError, match="by 'Q', not 'M'"):
        retention_table(periods, "M")
