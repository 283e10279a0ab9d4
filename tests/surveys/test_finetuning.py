"""Fine-tuning rows and the question split (reference/subpop.md §2.5-2.6), and the prepare job end to end."""

import ast

import numpy as np
import pandas as pd
import pytest
import yaml

from demoscope.errors import ConfigError, SurveyFormatError
from demoscope.pipelines.cli import main as cli_main
from demoscope.surveys import write_distributions
from demoscope.surveys.finetuning import (
    OUTPUT_COLUMNS,
    build_finetuning_frame,
    prepare_splits,
    screen_distributions,
    split_questions,
)

GROUPS = [("CREGION", "Northeast"), ("CREGION", "South"), ("POLPARTY", "Democrat"),
          ("POLPARTY", "Something else"), ("CITIZEN", "a US Citizen")]
SUBPOP_COLUMNS = ["qkey", "attribute", "group", "question", "options", "responses", "refusal_rate", "ordinal"]


def make_distributions(n_questions: int = 10) -> pd.DataFrame:
    """``n_questions`` x 5 groups with 2..4 scored options plus 'Refused', in our aggregate output format."""
    rows = []
    for q in range(n_questions):
        k = 2 + q % 3
        for i, (attribute, group) in enumerate(GROUPS):
            raw = np.arange(1, k + 1, dtype=float) + i
            rows.append({
                "qkey": f"Q{q:02d}_W26", "attribute": attribute, "group": group, "question": f"Question number {q}?",
                "options": [f"opt {j}" for j in range(k)] + ["Refused"], "responses": (raw / raw.sum()).tolist(),
                "refusal_rate": 0.01 * (i + 1), "ordinal": [float(j + 1) for j in range(k)],
                "n": 100, "n_eff": 80.0, "weight_sum": 95.0, "source": "ATP W26.sav",
            })
    return pd.DataFrame(rows)


def test_split_sizes_follow_ratios_and_cover_every_question_once():
    keys = [f"Q{i}" for i in range(10)]
    split = split_questions(keys, 0.6, 0.2, 0.2, seed=42)
    assert [len(split[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(keys)


def test_split_is_reproducible_and_independent_of_row_order():
    keys = [f"Q{i}" for i in range(50)]
    first = split_questions(keys, 0.8, 0.1, 0.1, seed=7)
    shuffled = list(np.random.default_rng(0).permutation(keys)) + keys[:5]  # reordered, with repeats
    assert split_questions(shuffled, 0.8, 0.1, 0.1, seed=7) == first
    assert split_questions(keys, 0.8, 0.1, 0.1, seed=8) != first


def test_split_equals_subpop_global_seed_shuffle_of_sorted_keys():
    keys = [f"Q{i}" for i in range(20)]
    np.random.seed(42)  # SubPOP: set_random_seed(42); np.random.shuffle(unique_qkeys)
    expected = np.array(sorted(keys), dtype=object)
    np.random.shuffle(expected)
    assert split_questions(keys, 0.9, 0.1, 0.0)["train"] == expected[:18].tolist()


def test_rounding_leaves_a_question_in_test_like_subpop():
    split = split_questions([f"Q{i}" for i in range(5)], 0.9, 0.1, 0.0)
    assert [len(split[s]) for s in ("train", "val", "test")] == [4, 0, 1]  # round(4.5)=4, round(0.5)=0


@pytest.mark.parametrize("ratios, message", [
    ((0.5, 0.1, 0.0), "must sum to 1"),
    ((1.2, -0.2, 0.0), "must be >= 0"),
])
def test_bad_ratios_raise_config_error(ratios, message):
    with pytest.raises(ConfigError, match=message):
        split_questions(["a", "b"], *ratios)


def test_all_groups_of_a_question_land_in_one_split():
    splits = prepare_splits(make_distributions(10), "QA", (0.6, 0.2, 0.2), seed=42)
    seen = {name: set(frame["qkey"]) for name, frame in splits.items()}
    assert [len(seen[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    assert not (seen["train"] & seen["val"]) and not (seen["train"] & seen["test"]) and not (seen["val"] & seen["test"])
    for frame in splits.values():
        assert (frame.groupby("qkey").size() == len(GROUPS)).all()


def test_output_dist_is_responses_plus_refusal_not_renormalised():
    dist = make_distributions(3)
    frame = build_finetuning_frame(dist, "PORTRAY", shuffle=False)
    assert list(frame.columns) == [*OUTPUT_COLUMNS, "n", "n_eff"]  # respondents ride along for the noise floor
    assert (frame["n_eff"] == 80.0).all() and (frame["n"] == 100.0).all()
    assert list(build_finetuning_frame(dist.drop(columns=["n", "n_eff"]), "QA").columns) == OUTPUT_COLUMNS
    row = frame[(frame.qkey == "Q02_W26") & (frame.group == "Democrat")].iloc[0]
    source = dist[(dist.qkey == "Q02_W26") & (dist.group == "Democrat")].iloc[0]
    assert row.output_dist == source.responses + [0.03]
    assert sum(row.output_dist) == pytest.approx(1.03)
    assert row.ordinal == [1.0, 2.0, 3.0, 4.0]


def test_rows_are_independent_of_input_order_and_shuffled_with_seed():
    dist = make_distributions(6)
    a = build_finetuning_frame(dist, "ALL", seed=42)
    b = build_finetuning_frame(dist.sample(frac=1, random_state=3), "ALL", seed=42)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 3 * len(dist)
    ordered = build_finetuning_frame(dist, "ALL", shuffle=False)
    pd.testing.assert_frame_equal(a, ordered.sample(frac=1, random_state=42).reset_index(drop=True))


def test_questions_with_more_than_ten_options_are_skipped_and_reported():
    dist = make_distributions(2)
    wide = dist[dist.qkey == "Q01_W26"].copy()
    wide["qkey"] = "WIDE_W26"
    wide["options"] = [[f"o{j}" for j in range(11)] + ["Refused"]] * len(wide)
    wide["responses"] = [[1 / 11] * 11] * len(wide)
    kept, skipped = screen_distributions(pd.concat([dist, wide]))
    assert set(kept.qkey) == {"Q00_W26", "Q01_W26"}
    assert skipped == ["question 'WIDE_W26' has 12 options, more than the 10 answer letters (A..J) "
                       "SubPOP's trainer scores"]
    with pytest.raises(SurveyFormatError, match="'WIDE_W26' has 12 options"):
        build_finetuning_frame(wide, "QA")


def test_options_must_be_one_longer_than_responses():
    dist = make_distributions(2)
    dist.at[3, "responses"] = dist.at[3, "responses"] + [0.0]
    with pytest.raises(SurveyFormatError) as error:
        screen_distributions(dist)
    assert str(error.value) == (
        "distributions, column 'options': expected one option more than responses (the last option is the refusal); "
        "1 of 10 row(s) fail: row 3 (qkey 'Q00_W26', group 'Something else'): 3 options, 3 responses")


def test_prepare_job_writes_twelve_splits_readable_by_literal_eval(tmp_path, capsys):
    write_distributions(make_distributions(10), tmp_path / "agg")
    out = tmp_path / "prep"
    assert cli_main(["prepare", "--distributions", str(tmp_path / "agg" / "distributions.parquet"),
                     "--out", str(out)]) == 0
    for kind in ("QA", "BIO", "PORTRAY", "ALL"):
        for split in ("train", "val", "test"):
            assert (out / f"opnqa_{kind}_{split}.csv").is_file() and (out / f"opnqa_{kind}_{split}.parquet").is_file()
    train = pd.read_csv(out / "opnqa_QA_train.csv")
    assert list(train.columns) == [*OUTPUT_COLUMNS, "n", "n_eff"]
    assert len(train) == 9 * len(GROUPS) and train.qkey.nunique() == 9
    dists = train.output_dist.map(ast.literal_eval)
    assert all(len(d) == len(o) + 1 for d, o in zip(dists, train.ordinal.map(ast.literal_eval)))
    assert len(pd.read_csv(out / "opnqa_ALL_train.csv")) == 3 * len(train)
    empty = pd.read_csv(out / "opnqa_QA_test.csv")  # 0.9/0.1/0.0 of 10 questions: the test file holds only the header
    assert empty.empty and list(empty.columns) == [*OUTPUT_COLUMNS, "n", "n_eff"]
    assert list(pd.read_parquet(out / "opnqa_QA_test.parquet").columns) == [*OUTPUT_COLUMNS, "n", "n_eff"]
    assert (pd.read_parquet(out / "opnqa_QA_train.parquet")["n_eff"] == 80.0).all()
    assert yaml.safe_load((out / "config.yaml").read_text())["train_ratio"] == 0.9
    printed = capsys.readouterr().out
    assert "train      9 questions; rows: BIO 45, QA 45, PORTRAY 45, ALL 135" in printed


def test_prepare_job_reads_subpop_csv_with_opinionqa_group_names(tmp_path):
    dist = make_distributions(4)[SUBPOP_COLUMNS]
    dist["group"] = dist["group"].replace({"Something else": "Other", "a US Citizen": "Yes"})
    for column in ("options", "responses", "ordinal"):
        dist[column] = dist[column].map(str)
    dist.to_csv(tmp_path / "opinionqa.csv", index=False)
    out = tmp_path / "prep"
    argv = ["prepare", "--distributions", str(tmp_path / "opinionqa.csv"), "--out", str(out), "--steering", "QA",
            "--train-ratio", "0", "--val-ratio", "0", "--test-ratio", "1", "--exclude-question", "Q03_W26"]
    assert cli_main(argv) == 0
    assert sorted(p.name for p in out.glob("*.csv")) == ["opnqa_QA_test.csv", "opnqa_QA_train.csv", "opnqa_QA_val.csv"]
    test = pd.read_csv(out / "opnqa_QA_test.csv")
    assert len(test) == 3 * len(GROUPS) and "Q03_W26" not in set(test.qkey)
    assert set(test.group) == {g for _, g in GROUPS}  # steering wording, not OpinionQA's
    assert test.input_prompt.str.endswith("\n\nAnswer:").all()


def test_prepare_job_bad_ratios_exit_2_with_message(tmp_path, capsys):
    write_distributions(make_distributions(2), tmp_path / "agg")
    argv = ["prepare", "--distributions", str(tmp_path / "agg" / "distributions.parquet"),
            "--out", str(tmp_path / "prep"), "--train-ratio", "0.5"]
    assert cli_main(argv) == 2
    assert "split ratios must sum to 1, got train_ratio=0.5, val_ratio=0.1, test_ratio=0.0" in capsys.readouterr().err
    assert not (tmp_path / "prep").exists()


def test_prepare_job_unknown_steering_exits_2(tmp_path, capsys):
    argv = ["prepare", "--distributions", str(tmp_path / "missing.parquet"), "--steering", "NONE"]
    assert cli_main(argv) == 2
    assert "steering" in capsys.readouterr().err
