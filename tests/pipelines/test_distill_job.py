"""The distillation-bias study end to end on the local Ray: a planted teacher bias reaches the distilled student."""

import pandas as pd
import pytest

from demoscope.errors import ConfigError
from demoscope.pipelines import bias as bias_job
from demoscope.pipelines import distill as distill_job
from demoscope.pipelines.bias import BiasConfig
from demoscope.pipelines.cli import main as cli_main
from demoscope.pipelines.distill import DistillConfig

pytestmark = pytest.mark.ray


@pytest.mark.slow
def test_planted_teacher_bias_transfers_to_the_distilled_student_only(local_ray, tmp_path):
    out = tmp_path / "study"
    config = DistillConfig(synthetic=1000, planted_bias="race", students=["bow"], epochs=6, lr=5e-3, num_workers=1,
                           out=str(out))
    result = distill_job.distill(config)
    soft = pd.read_parquet(out / "soft_labels.parquet")
    assert list(soft.columns) == ["text", "label", "label_0", "label_1"] and len(soft) == 800
    assert ((soft.label_0 + soft.label_1 - 1).abs() < 1e-6).all()
    stats = pd.read_csv(out / "bias" / "bias_statistics.csv")
    race = stats[(stats.comparison == "race") & (stats.subset == "all")].set_index("system")
    # Delta = African-American - European p(positive): the teacher learnt the planted bias ...
    assert race.loc["teacher", "mean_delta"] < -0.05 and race.loc["teacher", "significant"]
    # ... the student trained on the (unbiased) hard labels did not, the distilled one inherited it.
    assert race.loc["bow-distilled", "mean_delta"] < -0.03 and race.loc["bow-distilled", "significant"]
    assert race.loc["bow-distilled", "mean_delta"] < race.loc["bow-baseline", "mean_delta"] - 0.02
    accuracy = pd.read_csv(out / "accuracy.csv").set_index("system")["test_accuracy"]
    assert (accuracy > 0.6).all()
    for name in ("report.md", "bias/gender_bias.png", "bias/race_bias.png",
                 "students/bow-distilled/student/student.json"):
        assert (out / name).exists()
    # The Python API returns what the files hold.
    assert result.systems["bow-distilled"] == str(out / "students" / "bow-distilled" / "student")
    assert result.accuracy.set_index("system")["test_accuracy"].to_dict() == pytest.approx(accuracy.to_dict())
    assert result.bias.overall.set_index(["system", "comparison"])["mean_delta"].to_dict() == pytest.approx(
        stats[stats.subset == "all"].set_index(["system", "comparison"])["mean_delta"].to_dict())


def test_bias_job_scores_any_system_on_the_eec(tmp_path):
    out = tmp_path / "bias"
    result = bias_job.bias(BiasConfig(systems={"classifier": "tiny:classifier", "lm": "tiny:llama"}, out=str(out)))
    scores = pd.read_parquet(out / "eec_scores.parquet")
    pd.testing.assert_frame_equal(result.scored, scores)
    assert len(scores) == 8640 and scores[["classifier", "lm"]].apply(lambda c: c.between(0, 1).all()).all()
    stats = pd.read_csv(out / "bias_statistics.csv")
    assert set(stats.system) == {"classifier", "lm"} and set(stats.comparison) == {"gender", "race"}


def test_study_and_bias_errors_are_clear(tmp_path, capsys):
    with pytest.raises(ConfigError, match="no data"):
        distill_job.run(DistillConfig(out=str(tmp_path)))
    with pytest.raises(ConfigError, match="students must be bow, cnn or hf"):
        distill_job.run(DistillConfig(synthetic=10, students=["svm"], out=str(tmp_path)))
    assert cli_main(["bias", "--out", str(tmp_path)]) == 2
    assert "no systems to audit" in capsys.readouterr().err
