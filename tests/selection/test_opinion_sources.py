"""Survey waves as GradEx sources: examples, the world, and first-order estimates per subset of waves."""

import numpy as np

from demoscope.selection.first_order import FirstOrderEstimator, FirstOrderSettings
from demoscope.selection.gradients import projected_gradients
from demoscope.selection.opinion_sources import build_opinion_world, opinion_examples, wave_of
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
    world = build_opinion_world(train.head(120), val.head(40), "tiny:llama", settings=settings, source_of=halves.get)
    assert set(world.sources) == {"half-0", "half-1"} and sum(map(len, world.sources.values())) == 120
    _, tokenizer = load_causal_lm(resolve_model("tiny:llama"))
    ids, labels = opinion_examples(train.head(1), tokenizer)[0]
    spaced = letter_token_ids(tokenizer)[1]
    assert labels[:-1] == [-100] * (len(ids) - 1) and labels[-1] == spaced[int(np.argmax(train.output_dist.iloc[0]))]
    gradients = {name: projected_gradients(world.model, batches(examples, 16), world.projection, world.names, "instruction")[1]
                 for name, examples in world.sources.items()}
    estimator = FirstOrderEstimator(world.model, world.projection, gradients, world.val_batches,
                                    FirstOrderSettings(seed=0), world.names)
    losses = [estimator(["half-0"]), estimator(["half-1"]), estimator(["half-0", "half-1"])]
    assert all(np.isfinite(losses)) and len(set(np.round(losses, 8))) > 1  # subsets get different estimates
