"""Bias report files: CSV, Markdown and both plots, written atomically."""

import numpy as np
import pandas as pd
import pytest

from demoscope.bias import generate_eec, write_bias_report
from demoscope.errors import ConfigError


@pytest.fixture(scope="module")
def scores():
    eec = generate_eec()
    rng = np.random.default_rng(1)
    teacher = rng.uniform(0.3, 0.7, len(eec))
    return {
        "teacher": teacher,
        "baseline": rng.uniform(0.3, 0.7, len(eec)),
        "distilled": teacher - 0.1 * (eec["Gender"] == "female").to_numpy() + rng.normal(0, 0.01, len(eec)),
    }


def test_report_writes_tables_and_plots_and_leaves_no_temporaries(tmp_path, scores):
    paths = write_bias_report(scores, tmp_path / "bias")
    names = sorted(p.name for p in (tmp_path / "bias").iterdir())
    assert names == ["bias_pairs.csv", "bias_statistics.csv", "bias_statistics.md", "gender_bias.png", "race_bias.png"]
    assert set(paths) == {"statistics_csv", "statistics_md", "pairs_csv", "gender_plot", "race_plot"}
    for key in ("gender_plot", "race_plot"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stats = pd.read_csv(paths["statistics_csv"])
    # 3 systems x {gender, race} x {all, neutral}; Bonferroni family = 6 per subset.
    assert len(stats) == 12 and set(stats["n_tests"]) == {6}
    row = stats[(stats.system == "distilled") & (stats.comparison == "gender") & (stats.subset == "all")].iloc[0]
    assert row["verdict"] == "male higher" and row["n_b_higher"] > 2 * row["n_a_higher"]
    pairs = pd.read_csv(paths["pairs_csv"])
    assert len(pairs) == 3 * (1584 + 144)
    markdown = paths["statistics_md"].read_text()
    assert "## Gender (female vs male)" in markdown and "## Race (African-American vs European)" in markdown
    assert "| distilled | all | 1584 |" in markdown and "male higher" in markdown


def test_seed_variant_report_has_1440_gender_and_140_race_pairs(tmp_path, scores):
    paths = write_bias_report({"teacher": scores["teacher"]}, tmp_path, variant="seed", subsets=("all",))
    stats = pd.read_csv(paths["statistics_csv"])
    assert stats.set_index("comparison")["n_pairs"].to_dict() == {"gender": 1440, "race": 140}
    assert "1,440" in paths["statistics_md"].read_text() and "(140:" in paths["statistics_md"].read_text()


def test_failed_report_leaves_nothing_behind(tmp_path, scores):
    with pytest.raises(ConfigError, match="one per EEC row"):
        write_bias_report({"short": scores["teacher"][:10]}, tmp_path / "out")
    with pytest.raises(ConfigError, match="collides"):
        write_bias_report({"Gender": scores["teacher"]}, tmp_path / "out")
    assert not (tmp_path / "out").exists()
