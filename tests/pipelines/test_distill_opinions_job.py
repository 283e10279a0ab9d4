"""Opinion distillation on the local Ray: teacher targets, a student fitted to them, per-group comparison."""

import numpy as np
import pandas as pd
import pytest

from demoscope.models import TransformersOptionScorer, load_causal_lm
from demoscope.models.names import resolve_model
from demoscope.pipelines import distill_opinions as job
from demoscope.pipelines.distill_opinions import OpinionDistillConfig

pytestmark = pytest.mark.ray


@pytest.mark.slow
def test_student_learns_the_teachers_distributions_and_groups_are_compared(local_ray, prepared, random_adapter,
                                                                           tmp_path):
    out = tmp_path / "op"
    config = OpinionDistillConfig(train_file=str(prepared["train"]), test_file=str(prepared["test"]),
                                  teacher="tiny:llama", teacher_adapter=str(random_adapter), student="tiny:llama@1",
                                  epochs=2, lr=5e-3, num_workers=1, n_boot=20, out=str(out))
    result = job.distill_opinions(config)
    targets = pd.read_parquet(out / "targets" / "train.parquet")
    train = pd.read_parquet(prepared["train"])
    assert len(targets) == len(train)
    # The targets are the teacher's answers, not the humans'.
    row = targets.iloc[0]
    model, tokenizer = load_causal_lm(resolve_model("tiny:llama"), adapters={"t": str(random_adapter)})
    teacher = TransformersOptionScorer(model, tokenizer, adapter="t").score([row.input_prompt],
                                                                            [len(row.output_dist)])[0]
    # Written as `prepare` writes a survey: the answers renormalised without the refusal, then the refusal share.
    expected = [*(teacher[:-1] / teacher[:-1].sum()), teacher[-1]]
    assert np.allclose(list(row.output_dist), expected, atol=1e-5)
    table = pd.read_csv(out / "per_group.csv")
    pd.testing.assert_frame_equal(result.per_group, table, check_dtype=False)
    assert result.student.artifact == out / "student" / "adapter" and result.student.history
    assert len(table) == 22 and np.allclose(table["change"], table["student"] - table["teacher"])
    assert (out / "per_group.png").exists() and "closer to the humans" in (out / "report.md").read_text()
