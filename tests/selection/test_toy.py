"""The noisy-addition toy: the data format, then the world the select job distributes (built small)."""

import dataclasses

import numpy as np
import torch

from demoscope.selection.first_order import validation_loss
from demoscope.selection.toy import (
    GPT2_TARGETS,
    VOCAB,
    ToySettings,
    addition_steps,
    build_model,
    build_world,
    encode,
    fine_tune_loss,
    make_example,
)


def test_addition_steps_match_the_notebook_example():
    # 6 7 0 1 3 + 2 3 9 2 4  ->  0 7 | 0 3 7 | 0 9 3 7 | 1 0 9 3 7 | 9 0 9 3 7
    steps, out = addition_steps([6, 7, 0, 1, 3], [2, 3, 9, 2, 4])
    assert steps == [[0, 7], [0, 3, 7], [0, 9, 3, 7], [1, 0, 9, 3, 7]]
    assert out == [9, 0, 9, 3, 7]
    _, carried = addition_steps([9, 9, 9, 9, 9], [1, 0, 0, 0, 1])
    assert carried == [1, 1, 0, 0, 0, 0]


def test_noisy_examples_keep_the_shape_and_prompt_tokens_are_unscored():
    rng = np.random.default_rng(0)
    prompt, answer = make_example(rng)
    a, b = prompt[:-1].split("+")
    assert int(answer.split("|")[-1]) == int(a) + int(b)
    noisy_prompt, noisy_answer = make_example(np.random.default_rng(0), noisy=True)
    assert noisy_prompt == prompt and [len(x) for x in noisy_answer.split("|")] == [len(x) for x in answer.split("|")]
    ids, labels = encode(prompt, answer)
    assert labels[: len(prompt)] == [-100] * len(prompt) and labels[len(prompt):] == ids[len(prompt):]


# A world small enough for the default test run (about a second once transformers is imported).
TINY = ToySettings(clean_sources=2, noisy_sources=1, samples_per_source=4, pretrain_examples=32, pretrain_steps=3,
                   meta_steps=3, val_examples=8, hidden_size=16, num_heads=2, project_dim=16, batch_size=8)


def correct_sum(ids) -> bool:
    """Whether an encoded example's answer is the sum of its two numbers."""
    prompt, answer = "".join(VOCAB[i] for i in ids).removesuffix("<eos>").split("=")
    a, b = prompt.split("+")
    return int(answer.split("|")[-1]) == int(a) + int(b)


def test_build_world_meta_trains_a_lora_adapter_on_clean_and_noisy_sources():
    world = build_world(TINY)
    assert list(world.sources) == ["clean-00", "clean-01", "noisy-02"] and world.noisy == ["noisy-02"]
    assert all(len(examples) == TINY.samples_per_source for examples in world.sources.values())
    assert all(correct_sum(ids) for name in ("clean-00", "clean-01") for ids, _ in world.sources[name])
    assert not any(correct_sum(ids) for ids, _ in world.sources["noisy-02"])  # random answers
    assert sum(len(b["input_ids"]) for b in world.val_batches["addition"]) == TINY.val_examples
    # Gradients are taken w.r.t. the LoRA tensors only, and meta-training moved B off its zero start.
    params = dict(world.model.named_parameters())
    assert world.names and all("lora_" in name for name in world.names)
    assert {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in world.names} == set(GPT2_TARGETS)
    assert all(params[name].detach().abs().sum() > 0 for name in world.names if "lora_B" in name)
    assert world.projection.to_dict()["dim_out"] == TINY.project_dim and world.projection.seed == TINY.seed
    # Pre-training moved the base model off its seeded random start.
    fresh = dict(build_model(TINY.hidden_size, TINY.num_layers, TINY.num_heads, TINY.seed).named_parameters())
    assert not torch.equal(fresh["transformer.wte.weight"], params["base_model.model.transformer.wte.weight"])
    # The same settings give the same world (a re-run reuses its gradients); another seed does not.
    assert build_world(TINY).fingerprint() == world.fingerprint()
    other = build_world(dataclasses.replace(TINY, seed=1))
    assert other.fingerprint() != world.fingerprint() and other.projection.seed == 1


def test_world_gradients_error_check_and_real_fine_tune():
    world = build_world(TINY)
    stored = {name: world.source_gradients(name) for name in world.sources}
    outputs, z = stored["noisy-02"]
    assert outputs.shape == (TINY.samples_per_source,) and z.shape == (TINY.samples_per_source, TINY.project_dim)
    assert np.isfinite(z).all() and np.abs(z).sum() > 0
    # The linearisation holds at the error-check step size, far better than ignoring the gradient term.
    error = world.error_check(stored, ["clean-00", "noisy-02"])
    assert error.n_samples == 2 * TINY.samples_per_source
    assert error.mean_squared_relative_error < 0.1 * error.baseline_mean_squared_relative_error
    # A real fine-tune works on a copy: the world (and so its gradients) stays as it was.
    before = world.fingerprint()
    val = [b for group in world.val_batches.values() for b in group]
    base = validation_loss(world.model, val, TINY.loss_weighting)
    tuned = fine_tune_loss(world, ["clean-00", "clean-01"], steps=3)
    assert np.isfinite(tuned) and tuned > 0 and tuned != base
    assert world.fingerprint() == before
