"""GradEx selection on the local Ray: gradient shards on Ray Data, subset estimates as Tune trials, verification."""

import json

import pandas as pd
import pytest

from demoscope.config import SelectConfig
from demoscope.selection import storage
from demoscope.tune import select as select_job

pytestmark = pytest.mark.ray


@pytest.mark.slow  # about 2 minutes: a Tune experiment per greedy round
def test_toy_selection_ranks_clean_sources_first_and_verifies_against_real_fine_tunes(local_ray, tmp_path):
    out = tmp_path / "select"
    config = SelectConfig(clean_sources=3, noisy_sources=2, n_subsets=10, verify=1, fine_tune_steps=20, out=str(out))
    assert select_job.run(config) == 0
    assert sorted(storage.list_sources(out / "gradients")) == ["clean-00", "clean-01", "clean-02", "noisy-03", "noisy-04"]
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 10 and trials["estimated_loss"].notna().all()
    scores = pd.read_csv(out / "scores.csv")
    assert list(scores["noisy"]) == [False, False, False, True, True]  # sorted best first: clean ones on top
    greedy = pd.read_csv(out / "greedy.csv")
    assert len(greedy) >= 1 and greedy["added"].iloc[0].startswith("clean")
    verification = pd.read_csv(out / "verification.csv").set_index("check")
    assert set(verification.index) == {"selected", "random-0"} and (verification["real_loss"] > 0).all()
    assert (verification["speedup"] > 1).all()  # an estimate is cheaper than a fine-tune
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["separation"] == 1.0 and (out / "scores.png").exists() and (out / "report.md").exists()
