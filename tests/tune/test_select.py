"""GradEx selection on the local Ray: gradient shards on Ray Data, subset estimates as Tune trials, verification."""

import json
import math

import pandas as pd
import pytest
import yaml

from demoscope.selection import storage
from demoscope.tune import select as select_job
from demoscope.tune import select_trials
from demoscope.tune.select import SelectConfig

pytestmark = pytest.mark.ray


@pytest.mark.slow  # about 2 minutes: a Tune experiment per greedy round
def test_toy_selection_ranks_clean_sources_first_and_verifies_against_real_fine_tunes(local_ray, tmp_path):
    out = tmp_path / "select"
    config = SelectConfig(clean_sources=3, noisy_sources=2, n_subsets=10, verify=1, fine_tune_steps=20, out=str(out))
    assert select_job.run(config) == 0
    assert sorted(storage.list_sources(out / "gradients")) == ["clean-00", "clean-01", "clean-02", "noisy-03",
                                                               "noisy-04"]
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 10 and trials["estimated_loss"].notna().all()
    scores = pd.read_csv(out / "scores.csv")
    assert list(scores["noisy"]) == [False, False, False, True, True]  # sorted best first: clean ones on top
    greedy = pd.read_csv(out / "greedy.csv")
    assert len(greedy) >= 1 and greedy["added"].iloc[0].startswith("clean")
    verification = pd.read_csv(out / "verification.csv").set_index("check")
    assert set(verification.index) == {"selected", "random-0"} and (verification["real_loss"] > 0).all()
    assert (verification["speedup"] > 0).all() and verification["speedup"].notna().all()  # timed; the ratio is bench's
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["separation"] == 1.0 and (out / "scores.png").exists() and (out / "report.md").exists()


@pytest.mark.slow  # about 2 minutes: Tune experiments per greedy round, then two runs of the train job
def test_subpop_topics_are_selected_for_target_groups_and_verified_with_the_train_job(local_ray, prepared, tmp_path):
    from demoscope.selection.opinion_sources import source_labels
    from demoscope.training.opinion_data import read_prepared

    out = tmp_path / "topics"
    train = read_prepared(prepared["train"])
    # The fixture's one wave is all about guns: give its questions three topics of our own (a CSV topics file).
    qkeys = sorted(train.qkey.unique())
    topics_file = tmp_path / "topics.csv"
    pd.DataFrame({"qkey": qkeys,
                  "topic": [f"topic-{i % 3}" for i in range(len(qkeys))]}).to_csv(topics_file, index=False)
    config = SelectConfig(task="subpop", sources="topic", topics=str(topics_file), train_file=str(prepared["train"]),
                          val_file=str(prepared["val"]), target_groups=["POLPARTY=Democrat", "Republican"],
                          meta_steps=5, project_dim=32, n_subsets=6, verify=2, verify_epochs=1, out=str(out))
    outcome = select_job.select(config)
    labels = source_labels(train, "topic", str(topics_file))
    topics = sorted(labels.unique())
    assert sorted(storage.list_sources(out / "gradients")) == topics
    scores = pd.read_csv(out / "scores.csv")
    assert sorted(scores.source) == topics == ["topic-0", "topic-1", "topic-2"] and scores.samples.sum() == len(train)
    verification = pd.read_csv(out / "verification.csv").set_index("check")
    selected = verification.loc["selected", "subset"].split(",")
    assert selected == json.loads((out / "metrics.json").read_text())["selected"] == list(outcome.selected)
    others = min(2, math.comb(3, len(selected)) - 1)  # distinct random subsets of the selection's size
    assert list(verification.index) == ["selected"] + [f"random-{i}" for i in range(others)]
    # Each check is a real run of the train job from the meta-trained adapter, on exactly its subset's rows.
    for check, subset in verification["subset"].items():
        rows = pd.read_parquet(out / "verify" / check / "train.parquet")
        assert set(source_labels(rows, "topic", str(topics_file))) == set(subset.split(","))
        assert all(sorted(d) == [0.0] * (len(d) - 1) + [1.0] for d in rows.output_dist)  # one-hot modal targets
        assert (out / "verify" / check / "adapter" / "adapter_model.safetensors").exists()
        run = yaml.safe_load((out / "verify" / check / "config.yaml").read_text())
        assert run["init_adapter"] == str(out / "meta-adapter") and run["objective"] == "opinion-kl"
    val = pd.read_parquet(out / "verify" / "val.parquet")
    assert set(val.group) == {"Democrat", "Republican"}
    assert (verification[["estimated_loss", "real_loss", "real_option_kl"]] > 0).all().all()
    assert (verification["speedup"] > 0).all() and verification["speedup"].notna().all()
    report = (out / "report.md").read_text()
    assert "Spearman" in report and f"validated on {len(val)} rows" in report


def test_survey_options_without_the_survey_task_are_refused_with_the_fix(capsys, tmp_path):
    from demoscope.tune.select import main

    assert main(["--sources", "topic", "--target-groups", "Democrat", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "target_groups, sources apply to task=subpop" in err and "add --task subpop" in err


def test_subpop_task_without_splits_names_the_missing_flags(tmp_path):
    from demoscope.errors import ConfigError

    with pytest.raises(ConfigError, match="needs --train-file and --val-file"):
        select_job.run(SelectConfig(task="subpop", out=str(tmp_path)))


def test_each_distinct_subset_is_estimated_once_across_ensembles_and_greedy_rounds(monkeypatch, tmp_path):
    """No Ray here: the Tune experiment is replaced by a recorder of the subsets it would run."""
    import io

    from rich.console import Console

    experiments = []

    def recorded(subsets, world, root, out, name, concurrent):
        experiments.append([sorted(s) for s in subsets])
        return [{"subset": s, "estimated_loss": float(len(s)), "seconds": 0.1} for s in subsets]

    monkeypatch.setattr(select_trials, "_run_trials", recorded)
    printed = io.StringIO()
    cache = select_trials.EstimateCache(None, "root", tmp_path, 1, Console(file=printed, width=200))
    ensemble = cache.estimate([["a", "b"], ["b", "a"], ["a", "c"], ["a", "b"]], "ensemble", "random ensemble")
    assert list(ensemble.estimated_loss) == [2.0, 2.0, 2.0, 2.0] and list(ensemble.subset[1]) == ["b", "a"]
    greedy = cache.estimate([["a", "b"], ["a", "c"], ["a", "d"]], "greedy-1", "greedy round 2/4")
    assert list(greedy.subset) == [["a", "b"], ["a", "c"], ["a", "d"]]
    assert experiments == [[["a", "b"], ["a", "c"]], [["a", "d"]]]  # 7 requests, 3 trials
    assert cache.estimate([["c", "a"]], "greedy-2", "greedy round 3/4").estimated_loss.tolist() == [2.0]
    assert len(experiments) == 2  # nothing new: no Tune experiment at all
    lines = printed.getvalue().splitlines()
    assert lines[0] == "random ensemble: 4 subsets, 2 distinct, 2 to estimate as Tune trials (0 already estimated)"
    assert lines[1] == "greedy round 2/4: 3 subsets, 3 distinct, 1 to estimate as Tune trials (2 already estimated)"


def test_greedy_rounds_run_as_one_tune_experiment_each_named_by_round(monkeypatch, tmp_path):
    """No Ray here: the library's greedy search asks the job's cache for a round; each becomes one experiment."""
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from demoscope.selection.search import GreedyStep, greedy_forward_selection

    loss = {"a": 3.0, "b": 1.0, "c": 2.0}
    experiments = []

    def recorded(subsets, world, root, out, name, concurrent):
        experiments.append((name, subsets))
        return [{"subset": s, "estimated_loss": sum(loss[x] for x in s) / len(s) ** 2, "seconds": 0.1}
                for s in subsets]

    monkeypatch.setattr(select_trials, "_run_trials", recorded)
    printed = io.StringIO()
    world = SimpleNamespace(sources={name: [] for name in loss})
    cache = select_trials.EstimateCache(world, "root", tmp_path, 1, Console(file=printed, width=200))
    result = greedy_forward_selection(list(loss), cache.greedy_round)
    # b (1.0), then b+c (0.75), then b+c+a (6/9) beats 0.75: all three, in the order added.
    assert result.selected == ["b", "c", "a"] and result.history[-1] == GreedyStep(2, "a", 6 / 9)
    assert experiments == [("greedy-0", [["a"], ["b"], ["c"]]), ("greedy-1", [["b", "a"], ["b", "c"]]),
                           ("greedy-2", [["b", "c", "a"]])]
    assert [line.split(":")[0] for line in printed.getvalue().splitlines()] == [
        "greedy round 1/3", "greedy round 2/3", "greedy round 3/3"]
