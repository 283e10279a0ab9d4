"""The synthetic survey world: real-format files, determinism, and a truth the files agree with."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from demoscope.surveys.synthetic import SyntheticWorld, generate_world, true_distributions

RESPONDENTS = 4000


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> SyntheticWorld:
    messages: list[str] = []
    out = generate_world(tmp_path_factory.mktemp("world"), waves=2, respondents=RESPONDENTS, seed=3,
                         questions_per_wave=12, progress=messages.append)
    assert len(messages) == 4  # two waves, the GSS file, the truth
    return out


def _codebook(world: SyntheticWorld) -> dict:
    return json.loads(world.codebook_path.read_text())


def _truth(world: SyntheticWorld, qkey: str, group: str) -> np.ndarray:
    rows = world.truth[(world.truth.qkey == qkey) & (world.truth.group == group)]
    assert len(rows) == 1
    return np.asarray(rows.responses.iloc[0])


def _weighted_share(frame: pd.DataFrame, qkey: str, members: pd.Series, weight: str, k: int) -> np.ndarray:
    """Weighted distribution over codes 1..k among members with a weight and a substantive answer."""
    keep = members & frame[qkey].between(1, k) & frame[weight].notna()
    counts = np.bincount(frame.loc[keep, qkey].astype(int) - 1, weights=frame.loc[keep, weight], minlength=k)
    return counts / counts.sum()


def test_files_are_written_with_real_names_and_nothing_else(world):
    names = [p.name for p in world.files]
    assert names == ["ATP W26.sav", "ATP W29.sav", "GSS2022.dta"]
    out = world.codebook_path.parent
    # Atomic writes leave no temporary files behind.
    assert sorted(p.name for p in out.iterdir()) == ["codebook.json", "surveys", "truth.parquet"]
    assert sorted(p.name for p in (out / "surveys").iterdir()) == sorted(names)
    saved = pd.read_parquet(out / "truth.parquet")
    assert saved[["qkey", "attribute", "group"]].equals(world.truth[["qkey", "attribute", "group"]])
    assert np.allclose(np.concatenate(saved.responses.tolist()), np.concatenate(world.truth.responses.tolist()))


def test_atp_wave_reads_back_with_pew_columns_and_labels(world):
    frame, meta = pyreadstat.read_sav(str(world.files[0]))
    book = _codebook(world)
    assert list(frame.columns[:2]) == ["QKEY", "WEIGHT_W26"]
    assert frame["QKEY"].is_unique and len(frame) == RESPONDENTS
    weights = frame["WEIGHT_W26"]
    assert (weights.dropna() > 0).all() and 0.9 < weights.mean() < 1.1 and 0 < weights.isna().mean() < 0.03
    labels = meta.variable_value_labels
    assert "College graduate/some post grad" in labels["F_EDUCCAT2"].values()
    assert labels["F_PARTY_FINAL"][2.0] == "Democrat" and labels["F_PARTY_FINAL"][99.0] == "Refused"
    questions = [c for c in frame.columns if c in book]
    assert len(questions) == 12 and "CARRYGUN_W26" in questions
    for q in questions:
        codes = list(labels[q])
        assert codes == sorted(codes) and codes[-1] == 99.0 and labels[q][99.0] == "Refused"
        assert [labels[q][c] for c in codes] == book[q]["options"]
        label = meta.column_names_to_labels[q]
        assert label.startswith(f"{q}. ") and book[q]["original_qbody"].startswith(label.split(". ", 1)[1])
        assert set(frame[q].dropna().unique()) <= set(codes)
    answers = frame[questions].to_numpy().ravel()
    assert 0.01 < np.mean(answers == 99) < 0.03 and 0.03 < np.mean(np.isnan(answers)) < 0.07
    # Every group of the SubPOP table has respondents, even the small religions.
    for code in (5.0, 6.0, 8.0):  # Jewish, Muslim, Hindu
        assert (frame["F_RELIG"] == code).sum() >= 30
    party, ideology = frame["F_PARTY_FINAL"], frame["F_IDEO"]
    assert ideology[party == 2].isin([4, 5]).mean() > 0.4 > ideology[party == 1].isin([4, 5]).mean()


def test_gss_file_has_weights_race_dummies_and_no_refusal_code(world):
    frame, meta = pyreadstat.read_dta(str(world.files[-1]))
    book = _codebook(world)
    assert {"id", "wtssnrps", "region", "educ", "sexnow1", "polviews", "income16", "partyid", "relig"} <= set(frame)
    race = frame[[f"raceacs{k}" for k in range(1, 17)]]
    assert set(np.unique(race.dropna())) == {0.0, 1.0}
    assert (race.sum(axis=1) > 1).sum() > 20  # multi-select overlaps, e.g. Hispanic and white
    assert (frame["wtssnrps"].dropna() > 0).all() and frame["wtssnrps"].isna().any()
    questions = [c for c in frame.columns if c in book]
    assert len(questions) == 12
    for q in questions:
        k = len(book[q]["option_list"]) - 1
        assert list(meta.variable_value_labels[q].values()) == book[q]["option_list"][:-1]
        assert set(frame[q].dropna().unique()) <= set(range(1, k + 1))
        assert 0.02 < frame[q].isna().mean() < 0.09


GSS_NON_QUESTIONS = {"id", "wtssnrps", "region", "educ", "sexnow1", "polviews", "income16", "partyid", "relig"}


def test_codebook_covers_every_question_with_options_and_ordinal(world):
    book = _codebook(world)
    seen = set()
    for path in world.files:
        frame, _ = (pyreadstat.read_sav if path.suffix == ".sav" else pyreadstat.read_dta)(str(path))
        if path.suffix == ".sav":
            questions = [c for c in frame.columns if c != "QKEY" and not c.startswith(("WEIGHT_", "F_"))]
        else:
            questions = [c for c in frame.columns if c not in GSS_NON_QUESTIONS and not c.startswith("raceacs")]
        for q in questions:
            entry = book[q]
            options = entry["options"] if path.suffix == ".sav" else entry["option_list"]
            assert options[-1] == "Refused" and len(entry["ordinal"]) == len(options) - 1
        seen |= set(questions)
    assert seen == set(book) and len(book) == 36
    assert set(world.truth.qkey) == seen and world.truth.groupby("qkey").size().eq(22).all()
    assert np.allclose(world.truth.responses.map(sum), 1.0)
    assert world.truth.responses.map(len).tolist() == [len(book[q]["ordinal"]) for q in world.truth.qkey]


def test_same_seed_same_data_and_different_seed_different_data(tmp_path):
    def read(seed: int, name: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        w = generate_world(tmp_path / name, waves=1, respondents=300, seed=seed, questions_per_wave=10)
        return pyreadstat.read_sav(str(w.files[0]))[0], pyreadstat.read_dta(str(w.files[1]))[0], w.truth

    first, again, other = read(7, "a"), read(7, "b"), read(8, "c")
    for x, y in zip(first, again):
        pd.testing.assert_frame_equal(x, y)
    assert not first[0].equals(other[0]) and not first[1].equals(other[1])
    assert not np.allclose(np.concatenate(first[2].responses.tolist()), np.concatenate(other[2].responses.tolist()))


def test_extra_waves_reuse_questions_under_renamed_keys(tmp_path):
    w = generate_world(tmp_path, waves=16, respondents=200, seed=1, gss=False, questions_per_wave=10)
    assert [p.name for p in w.files[-3:]] == ["ATP W92.sav", "ATP W1001.sav", "ATP W1002.sav"]
    assert len(w.files) == 16
    w26, _ = pyreadstat.read_sav(str(tmp_path / "surveys" / "ATP W26.sav"))
    w1001, meta = pyreadstat.read_sav(str(tmp_path / "surveys" / "ATP W1001.sav"))
    assert "WEIGHT_W1001" in w1001 and "CARRYGUN_W1001" in w1001
    def stems(cols, suffix):
        return [c[: -len(suffix)] for c in cols if c.endswith(suffix) and c[0] != "W"]

    assert stems(w1001.columns, "_W1001") == stems(w26.columns, "_W26")
    assert meta.column_names_to_labels["CARRYGUN_W1001"].startswith("CARRYGUN_W1001. How often")
    # A reused question keeps its opinion model, so its truth is the same.
    assert np.allclose(_truth(w, "CARRYGUN_W1001", "Democrat"), _truth(w, "CARRYGUN_W26", "Democrat"))
    assert "CARRYGUN_W1001" in _codebook(w)


def test_answers_depend_on_party_along_the_ordinal_scale(world):
    frame, _ = pyreadstat.read_sav(str(world.files[0]))
    book = _codebook(world)
    dem, rep = frame["F_PARTY_FINAL"] == 2, frame["F_PARTY_FINAL"] == 1
    gaps = {}
    for q, entry in book.items():
        pos = np.asarray(entry["ordinal"])
        if q.endswith("_W26") and len(set(pos)) == len(pos):
            gaps[q] = (_truth(world, q, "Democrat") - _truth(world, q, "Republican")) @ pos / np.ptp(pos)
    assert len(gaps) >= 5 and np.median(np.abs(list(gaps.values()))) > 0.1  # strong party effects
    q = max(gaps, key=lambda key: abs(gaps[key]))
    pos = np.asarray(book[q]["ordinal"])
    observed = (_weighted_share(frame, q, dem, "WEIGHT_W26", len(pos))
                - _weighted_share(frame, q, rep, "WEIGHT_W26", len(pos))) @ pos / np.ptp(pos)
    assert abs(observed) > 0.15 and np.sign(observed) == np.sign(gaps[q])


def test_truth_matches_weighted_shares_in_the_files(world):
    book = _codebook(world)
    atp, _ = pyreadstat.read_sav(str(world.files[0]))
    groups = {"Democrat": atp["F_PARTY_FINAL"] == 2, "Female": atp["F_SEX"] == 2,
              "Liberal": atp["F_IDEO"] == 4, "$100,000 or more": atp["F_INCOME"].isin([8, 9])}
    for q in (c for c in atp.columns if c in book):
        for group, members in groups.items():
            share = _weighted_share(atp, q, members, "WEIGHT_W26", len(book[q]["ordinal"]))
            assert np.abs(share - _truth(world, q, group)).max() < 0.08, (q, group)
    gss, _ = pyreadstat.read_dta(str(world.files[-1]))
    members = {"Democrat": gss["partyid"].isin([0, 1]), "Asian": gss[[f"raceacs{k}" for k in range(4, 11)]].eq(1)
               .any(axis=1)}
    q = next(c for c in gss.columns if c in book)
    share = _weighted_share(gss, q, members["Democrat"], "wtssnrps", len(book[q]["ordinal"]))
    assert np.abs(share - _truth(world, q, "Democrat")).max() < 0.08
    assert members["Asian"].sum() > 100  # the multi-column Asian group is populated


def test_true_distributions_rejects_questions_the_world_cannot_hold():
    with pytest.raises(KeyError):
        true_distributions(["EVOBIOA_W34"])  # "Not sure" lies outside its ordinal scale
    with pytest.raises(KeyError):
        true_distributions(["NOT_A_QUESTION_W26"])
