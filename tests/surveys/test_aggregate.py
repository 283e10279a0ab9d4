"""Weighted distributions computed by hand on tiny ATP and GSS files."""

import numpy as np
import pandas as pd
import pytest

from demoscope.surveys import (
    AggregateInputs,
    CountAccumulator,
    aggregate_files,
    finalize,
    load_subpopulations,
    reduce_file,
)

from .conftest import atp_frame, gss_frame, write_atp


def row(frame, qkey, group):
    hit = frame[(frame.qkey == qkey) & (frame.group == group)]
    assert len(hit) == 1, f"expected one row for {qkey}/{group}, got {len(hit)}"
    return hit.iloc[0]


@pytest.fixture(scope="module")
def inputs22():
    return AggregateInputs.build(load_subpopulations("22"))


def test_weighted_shares_match_hand_computation(atp_file, inputs22):
    out, acc = aggregate_files([atp_file], inputs22)
    # Democrats: r1 w1 ans1, r2 w2 ans2, r3 w.5 refused, r4 NaN weight ans1 (counts 0).
    dem = row(out, "BLM_W68", "Democrat")
    assert dem.weight_sum == pytest.approx(3.5)
    assert dem.refusal_rate == pytest.approx(0.5 / 3.5)
    assert dem.responses == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert dem.n == 3  # the NaN-weight respondent is not counted
    assert dem.n_eff == pytest.approx(3.5**2 / (1 + 4 + 0.25))
    # Republicans: r5 w1.5 ans3, r6 w1 ans3, r7 NaN answer (dropped).
    rep = row(out, "BLM_W68", "Republican")
    assert rep.responses == pytest.approx([0.0, 0.0, 1.0])
    assert rep.refusal_rate == 0.0
    assert rep.n == 2


def test_refusal_share_is_excluded_then_reported(atp_file, inputs22):
    out, _ = aggregate_files([atp_file], inputs22)
    dem = row(out, "BLM_W68", "Democrat")
    assert sum(dem.responses) == pytest.approx(1.0)
    assert dem.options == ["Strongly support", "Somewhat support", "Oppose", "Refused"]
    assert len(dem.responses) == len(dem.options) - 1


def test_liberal_prefix_does_not_match_very_liberal(atp_file, inputs22):
    out, _ = aggregate_files([atp_file], inputs22)
    lib = row(out, "GUN_W68", "Liberal")  # r1 (w1, yes), r3 (w.5, no), r4 (NaN weight)
    assert lib.responses == pytest.approx([1 / 1.5, 0.5 / 1.5])
    assert lib.n == 2
    con = row(out, "GUN_W68", "Conservative")  # "Conservative" only, not "Very conservative"
    assert con.responses == pytest.approx([0.0, 1.0])


def test_question_text_and_placeholder_ordinal(atp_file, inputs22):
    out, _ = aggregate_files([atp_file], inputs22)
    r = row(out, "BLM_W68", "Democrat")
    assert r.question == "Do you support the Black Lives Matter movement?"
    assert r.ordinal == [1.0, 1.0, 1.0]
    assert r.source == "ATP W68.sav"


def test_codebook_gives_text_and_ordinal(atp_file, tmp_path):
    import json

    book = tmp_path / "codebook.json"
    book.write_text(json.dumps({"BLM_W68": {
        "refined_qbody": "Do you support BLM?",
        "options": ["Strongly support", "Somewhat support", "Oppose", "Refused"],
        "ordinal": [1.0, 2.0, 3.0]}}))
    inputs = AggregateInputs.build(load_subpopulations("22"), codebook_path=str(book))
    out, _ = aggregate_files([atp_file], inputs)
    r = row(out, "BLM_W68", "Republican")
    assert r.question == "Do you support BLM?"
    assert r.ordinal == [1.0, 2.0, 3.0]


def test_gss_offset_codes_race_union_and_nan_weight(gss_file, inputs22):
    out, acc = aggregate_files([gss_file], inputs22)
    # r1 w1 c1, r2 w2 c2; r5 NaN weight
    assert row(out, "natspac", "Democrat").responses == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert row(out, "natspac", "Democrat").n == 2
    # White = raceacs1: r1 (1, c1), r3 (1, c3), r4 (3, c3), r6 (NaN answer)
    white = row(out, "natspac", "White")
    assert white.responses == pytest.approx([0.2, 0.0, 0.8])
    assert white.refusal_rate == 0.0
    assert white.options[-1] == "Refused"
    assert white.ordinal == [1.0, 2.0, 3.0]  # from the shipped GSS codebook
    # Asian = union of raceacs4..10: r7 (raceacs4) and r1 (raceacs7) -> overlaps with White.
    assert row(out, "natspac", "Asian").responses == pytest.approx([1 / 3, 2 / 3, 0.0])
    # Liberal = polviews 1-3: r1 c1 w1, r2 c2 w2 (r5 NaN weight)
    assert row(out, "natspac", "Liberal").responses == pytest.approx([1 / 3, 2 / 3, 0.0])


def test_stata_ints_with_missing_are_cast_not_lost(tmp_path, inputs22):
    # pyreadstat hands Stata int columns with missing values back as object dtype (ints + NaN).
    frame = gss_frame().astype({"natspac": object})
    frame["natspac"] = [1, 2, 3, 3, 1, np.nan, 2]
    path = tmp_path / "gss.parquet"
    frame.to_parquet(path)
    spec = tmp_path / "gss_csv.yaml"
    spec.write_text(
        "name: gss-parquet\nweight: '^wtssnrps$'\nquestions: {columns: [natspac]}\nrefusal: missing\n"
        "option_codes: labels\nvalue_labels: {natspac: {1: Too little, 2: About right, 3: Too much}}\n"
        "attributes:\n  POLPARTY:\n    columns: [partyid]\n    groups:\n      Democrat: {codes: [0, 1]}\n"
    )
    inputs = AggregateInputs.build(load_subpopulations("22"), spec_path=str(spec))
    out, _ = aggregate_files([path], inputs)
    assert row(out, "natspac", "Democrat").responses == pytest.approx([1 / 3, 2 / 3, 0.0])


def test_custom_csv_survey_described_by_yaml(tmp_path):
    pd.DataFrame({
        "rid": [1, 2, 3, 4], "wt": [1.0, 3.0, 2.0, 2.0], "region": [1, 1, 2, 2], "q1": [1, 2, 2, 9],
    }).to_csv(tmp_path / "poll.csv", index=False)
    (tmp_path / "poll.yaml").write_text(
        "name: poll\nweight: '^wt$'\nid_column: rid\nquestions: {columns: [q1]}\nrefusal: last_label\n"
        "value_labels: {q1: {1: Yes, 2: No, 9: Refused}, region: {1: North, 2: South}}\n"
        "attributes:\n  CREGION:\n    columns: [region]\n    groups:\n"
        "      Northeast: {labels: [North]}\n      South: {prefix: sou}\n"
    )
    inputs = AggregateInputs.build(load_subpopulations("22"), spec_path=str(tmp_path / "poll.yaml"))
    out, _ = aggregate_files([tmp_path / "poll.csv"], inputs)
    assert row(out, "q1", "Northeast").responses == pytest.approx([0.25, 0.75])
    south = row(out, "q1", "South")
    assert south.responses == pytest.approx([0.0, 1.0])
    assert south.refusal_rate == pytest.approx(0.5)


def test_same_question_in_two_files_is_summed(tmp_path, inputs22):
    a = write_atp(tmp_path / "a.sav")
    b = write_atp(tmp_path / "b.sav", atp_frame().assign(WEIGHT_W68=lambda f: f.WEIGHT_W68 * 2))
    out, acc = aggregate_files([a, b], inputs22)
    dem = row(out, "BLM_W68", "Democrat")
    assert dem.weight_sum == pytest.approx(3.5 * 3)
    assert dem.responses == pytest.approx([1 / 3, 2 / 3, 0.0])  # shares unchanged by a common factor
    assert dem.n == 6
    assert dem.source == "a.sav;b.sav"


def test_combining_partials_in_any_order_gives_the_same_counts(tmp_path, inputs22):
    paths = [write_atp(tmp_path / f"w{i}.sav", atp_frame().assign(WEIGHT_W68=lambda f, i=i: f.WEIGHT_W68 + i))
             for i in range(3)]
    partials = [reduce_file(p, inputs22) for p in paths]
    results = []
    for order in ([0, 1, 2], [2, 0, 1]):
        acc = CountAccumulator(consolidate_every=2)
        for i in order:
            acc.add(partials[i])
        frame, _ = finalize(acc.counts(), acc.questions(), inputs22.subpopulations)
        results.append(frame.drop(columns="source"))
    pd.testing.assert_frame_equal(results[0], results[1])


def test_rows_follow_question_then_table_order(atp_file, inputs22):
    out, _ = aggregate_files([atp_file], inputs22)
    assert list(out.qkey) == sorted(out.qkey)
    order = [(s.attribute, s.group) for s in inputs22.subpopulations]
    ranks = [order.index((a, g))
             for a, g in zip(out.attribute, out.group) if True][: (out.qkey == out.qkey.iloc[0]).sum()]
    assert ranks == sorted(ranks)


def test_61_groups_include_the_extended_attributes(tmp_path):
    frame = atp_frame().assign(F_CITIZEN=[1, 1, 2, 1, 1, 2, 1, 1.0])
    labels = {"F_CITIZEN": {1.0: "Yes", 2.0: "No", 99.0: "Refused"},
              "BLM_W68": {1.0: "A", 2.0: "B", 3.0: "C", 99.0: "Refused"},
              "GUN_W68": {1.0: "Yes", 2.0: "No", 99.0: "Refused"},
              "F_PARTY_FINAL": {1.0: "Republican", 2.0: "Democrat", 3.0: "Independent"},
              "F_IDEO": {1.0: "Very conservative", 2.0: "Conservative", 3.0: "Moderate", 4.0: "Liberal",
                         5.0: "Very liberal"}}
    path = write_atp(tmp_path / "w.sav", frame, labels)
    out, _ = aggregate_files([path], AggregateInputs.build(load_subpopulations("61")))
    assert set(out.group) >= {"a US Citizen", "a Non-US Citizen", "Independent", "Very liberal", "Moderate"}
    noncit = row(out, "GUN_W68", "a Non-US Citizen")  # r3 (w.5, no), r6 (w1, no)
    assert noncit.responses == pytest.approx([0.0, 1.0])
