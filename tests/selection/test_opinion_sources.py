"""Survey waves and topics as GradEx sources: examples, targets, the world, and first-order estimates per subset."""

import numpy as np
import pandas as pd
import pytest
import torch

from demoscope.errors import ConfigError
from demoscope.selection.first_order import FirstOrderEstimator, FirstOrderSettings
from demoscope.selection.gradients import projected_gradients
from demoscope.selection.opinion_sources import (
    build_opinion_world,
    modal_targets,
    opinion_examples,
    source_labels,
    target_rows,
    wave_of,
)
from demoscope.selection.toy import ToySettings, batches
from demoscope.training.opinion_data import read_prepared


def test_wave_keys():
    assert wave_of("GUNLOCKED2_W26") == "W26" and wave_of("natenvir") == "GSS" and wave_of("S13_W1001") == "W1001"


def test_opinion_sources_give_first_order_estimates_per_subset(prepared):
    from demoscope.models import letter_token_ids, load_causal_lm
    from demoscope.models.names import resolve_model

    train, val = read_prepared(prepared["train"]), read_prepared(prepared["val"])
    # The fixture has one wave: split its questions into two sources by key parity.
    halves = {q: f"half-{i % 2}" for i, q in enumerate(sorted(train.qkey.unique()))}
    settings = ToySettings(meta_steps=5, project_dim=32, batch_size=16)
    world = build_opinion_world(train.head(120), val.head(40), "tiny:llama", settings=settings,
                                labels=train.qkey.map(halves))
    assert set(world.sources) == {"half-0", "half-1"} and sum(map(len, world.sources.values())) == 120
    _, tokenizer = load_causal_lm(resolve_model("tiny:llama"))
    ids, labels = opinion_examples(train.head(1), tokenizer)[0]
    spaced = letter_token_ids(tokenizer)[1]
    assert labels[:-1] == [-100] * (len(ids) - 1) and labels[-1] == spaced[int(np.argmax(train.output_dist.iloc[0]))]
    stored = {name: projected_gradients(world.model, batches(examples, 16), world.projection, world.names,
                                        "instruction")
              for name, examples in world.sources.items()}
    # The fingerprint a re-run compares: the same world hashes the same; a moved adapter does not.
    fingerprint = world.fingerprint()
    assert fingerprint == world.fingerprint()
    with torch.no_grad():
        dict(world.model.named_parameters())[world.names[0]].add_(1e-3)
        assert world.fingerprint() != fingerprint
        dict(world.model.named_parameters())[world.names[0]].sub_(1e-3)
    # Length-sorted batching (less padding) gives the same rows, back in the source's order.
    outputs, z = world.source_gradients("half-0")
    np.testing.assert_allclose(z, stored["half-0"][1], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(outputs, stored["half-0"][0], rtol=1e-5)
    estimator = FirstOrderEstimator(world.model, world.projection, {k: z for k, (_, z) in stored.items()},
                                    world.val_batches, FirstOrderSettings(seed=0), world.names)
    losses = [estimator(["half-0"]), estimator(["half-1"]), estimator(["half-0", "half-1"])]
    assert all(np.isfinite(losses)) and len(set(np.round(losses, 8))) > 1  # subsets get different estimates
    # The reference's error check, as the select job reports it: the linearisation explains the small move.
    error = world.error_check(stored, ["half-0", "half-1"], max_samples=40)
    assert error.n_samples == 40
    assert error.mean_squared_relative_error < 0.1 * error.baseline_mean_squared_relative_error


ROWS = pd.DataFrame({
    "qkey": ["GUN_W26", "GUN_W26", "TAX_W29", "natspac"],
    "attribute": ["POLPARTY", "POLIDEOLOGY", "POLPARTY", "POLPARTY"],
    "group": ["Democrat", "Liberal", "Republican", "Democrat"],
    "input_prompt": ["Question: Do you own a gun?\nA. Yes\nAnswer:"] * 2
    + ["Question: Is your income tax too high?\nA. Yes\nAnswer:",
       "Question: Space exploration spending?\nA. Yes\nAnswer:"],
    "output_dist": [[0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]],
})


def test_sources_are_waves_or_topics():
    assert source_labels(ROWS, "wave").tolist() == ["W26", "W26", "W29", "GSS"]
    assert source_labels(ROWS, "topic").tolist() == ["guns", "guns", "economy-work", "science-environment"]


def test_target_rows_by_group_name_attribute_and_question_pattern():
    assert target_rows(ROWS).index.tolist() == [0, 1, 2, 3]
    assert target_rows(ROWS, groups=["Democrat"]).index.tolist() == [0, 3]
    assert target_rows(ROWS, groups=["POLIDEOLOGY=Liberal", "Republican"]).index.tolist() == [1, 2]
    assert target_rows(ROWS, groups=["Democrat"], questions=["GUN*"]).index.tolist() == [0]


@pytest.mark.parametrize("kwargs, message", [
    ({"groups": ["Green"]}, "target group 'Green' is not in the validation split"),
    ({"questions": ["ABORT*"]}, "matches no question"),
    ({"groups": ["Republican"], "questions": ["GUN*"]}, "no validation row belongs to both"),
])
def test_target_rows_that_match_nothing_are_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        target_rows(ROWS, **kwargs)


def test_modal_targets_are_one_hot_at_the_most_chosen_option():
    assert modal_targets(ROWS).output_dist.tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1]]
    assert ROWS.output_dist[0] == [0.2, 0.7, 0.1]  # the input is left alone
