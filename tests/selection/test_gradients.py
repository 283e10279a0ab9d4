"""Per-sample outputs and gradients: clamping, masking, torch.func batch against the autograd loop."""

import math

import numpy as np
import pytest
import torch

from demoscope.errors import ConfigError
from demoscope.selection.gradients import (
    clamped_log_odds,
    gradient_dim,
    gradient_parameter_names,
    mean_log_odds,
    per_sample_gradients,
    per_sample_gradients_loop,
    projected_gradients,
    sample_outputs,
)
from demoscope.selection.projection import RademacherProjection
from tests.selection.helpers import random_batch, tiny_lora_model


def test_toy_clamp_matches_the_reference_formula():
    p = torch.tensor([0.5, 0.999, 0.2, 0.0005], dtype=torch.float64)
    got = clamped_log_odds(p, "toy")
    # p <- p - 1e-3; log(p / (1 - p + 1e-10)), by hand.
    assert got[0].item() == pytest.approx(math.log(0.499 / (0.501 + 1e-10)))
    assert got[1].item() == pytest.approx(math.log(0.998 / (0.002 + 1e-10)))
    assert got[2].item() == pytest.approx(math.log(0.199 / (0.801 + 1e-10)))
    # Below 1e-3 the reference takes the log of a negative number.
    assert math.isnan(got[3].item())


def test_instruction_clamp_shifts_only_the_extremes():
    p = torch.tensor([0.95, 0.9, 0.5, 0.0005, 0.001], dtype=torch.float64, requires_grad=True)
    got = clamped_log_odds(p, "instruction")
    expected = [math.log(0.94 / 0.06),        # > 0.9: minus 0.01
                math.log(0.9 / 0.1),          # exactly 0.9: untouched (strict >)
                0.0,
                math.log(0.0105 / 0.9895),    # < 0.001: plus 0.01
                math.log(0.001 / 0.999)]      # exactly 0.001: untouched
    assert got.tolist() == pytest.approx(expected)
    assert torch.isfinite(clamped_log_odds(torch.tensor([0.0, 1.0]), "instruction")).all()
    # The shifts are constants: d/dp = 1 / (q (1 - q)) at the shifted q.
    got[0].backward()
    assert p.grad[0].item() == pytest.approx(1 / (0.94 * 0.06))


def test_unknown_clamp_is_a_config_error():
    with pytest.raises(ConfigError):
        clamped_log_odds(torch.tensor([0.5]), "bogus")


def test_mean_log_odds_averages_only_the_shifted_target_tokens():
    logits = torch.randn(2, 4, 5, dtype=torch.float64)
    labels = torch.tensor([[-100, 2, 3, -100], [-100, -100, 1, 4]])
    got = mean_log_odds(logits, labels, "instruction")
    for row in range(2):
        probs = torch.softmax(logits[row], -1)
        # Position t predicts labels[t + 1].
        terms = [clamped_log_odds(probs[t, labels[row, t + 1]], "instruction") for t in range(3)
                 if labels[row, t + 1] != -100]
        assert got[row].item() == pytest.approx(torch.stack(terms).mean().item())


def test_parameter_names_skip_embeddings_norms_and_head():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=16, n_embd=16, n_layer=1, n_head=2, n_positions=16))
    names = gradient_parameter_names(model)  # all trainable: the filter alone decides
    assert names and not any(k in n for n in names for k in ("wte", "wpe", "ln_", "lm_head"))
    assert any("c_attn.weight" in n for n in names)
    lora = tiny_lora_model("gpt2")
    assert all("lora_" in n for n in gradient_parameter_names(lora))


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("clamp", ["toy", "instruction"])
def test_batched_torch_func_equals_the_autograd_loop(arch, clamp):
    model = tiny_lora_model(arch)
    attention = model.get_base_model().config._attn_implementation
    batch = random_batch()
    batched = per_sample_gradients(model, batch, clamp=clamp)
    loop = per_sample_gradients_loop(model, batch, clamp=clamp)
    assert batched.grads.shape == (5, gradient_dim(model))
    assert torch.isfinite(batched.grads).all()
    assert batched.grads.abs().sum(1).min() > 0
    torch.testing.assert_close(batched.outputs, loop.outputs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(batched.grads, loop.grads, rtol=1e-4, atol=1e-6)
    # Chunked vmap gives the same numbers; dropout stayed off and the mode was restored.
    chunked = per_sample_gradients(model, batch, clamp=clamp, chunk_size=2)
    torch.testing.assert_close(chunked.grads, batched.grads, rtol=1e-5, atol=1e-7)
    assert not model.training and model.get_base_model().config._attn_implementation == attention
    # The reference's own loop (one batch forward, retain_graph per sample) agrees too.
    shared = per_sample_gradients_loop(model, batch, clamp=clamp, shared_forward=True)
    torch.testing.assert_close(shared.grads, loop.grads, rtol=1e-4, atol=1e-6)


def test_a_sample_without_targets_is_refused():
    model = tiny_lora_model("gpt2")
    batch = random_batch()
    batch["labels"][1] = -100
    with pytest.raises(ValueError, match=r"\[1\]"):
        per_sample_gradients(model, batch)


def test_projected_gradients_and_outputs_across_batches():
    model = tiny_lora_model("llama")
    batches = [random_batch(seed=0), random_batch(n=3, seed=1)]
    projection = RademacherProjection(gradient_dim(model), 16, seed=3)
    outputs, z = projected_gradients(model, batches, projection, clamp="instruction")
    assert outputs.shape == (8,) and z.shape == (8, 16)
    loop = [per_sample_gradients_loop(model, b, clamp="instruction") for b in batches]
    expected = projection.project(torch.cat([r.grads for r in loop]).numpy())
    np.testing.assert_allclose(z, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(outputs, sample_outputs(model, batches, "instruction"), rtol=1e-5)
    with pytest.raises(ConfigError, match="dim_in"):
        projected_gradients(model, batches, RademacherProjection(10, 16))


def test_target_positions_pick_each_rows_scored_logits_in_order():
    from demoscope.selection.gradients import target_positions

    labels = torch.tensor([[-100, -100, 7, 8, -100], [-100, 5, -100, -100, 9], [-100, -100, -100, -100, 4]])
    positions, targets = target_positions(labels)
    # logits at t predict labels[t + 1]; rows are padded to the widest (position 0, target -100)
    assert positions.tolist() == [[1, 2], [0, 3], [3, 0]]
    assert targets.tolist() == [[7, 8], [5, 9], [4, -100]]


def test_projecting_only_target_positions_changes_no_number(monkeypatch):
    from demoscope.selection import gradients

    model = tiny_lora_model("llama")
    assert gradients._keeps_logits(model)  # transformers' logits_to_keep: the fast path is the one in use
    batch = random_batch()
    fast = per_sample_gradients(model, batch, clamp="instruction")
    monkeypatch.setattr(gradients, "_keeps_logits", lambda model: False)  # a model without logits_to_keep
    full = per_sample_gradients(model, batch, clamp="instruction")
    torch.testing.assert_close(fast.outputs, full.outputs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast.grads, full.grads, rtol=1e-4, atol=1e-6)


def test_vmap_chunks_are_sized_by_activation_memory(monkeypatch):
    """A real model's batch is differentiated a few samples at a time; the numbers do not change."""
    from types import SimpleNamespace

    from demoscope.selection import gradients

    smollm2 = SimpleNamespace(config=SimpleNamespace(num_hidden_layers=30, hidden_size=576, num_attention_heads=9))
    per_sample = 2 * 30 * 250 * (34 * 576 + 5 * 9 * 250)
    assert gradients.vmap_chunk_size(smollm2, 250) == 2 * 2**30 // per_sample == 4
    assert gradients.vmap_chunk_size(smollm2, 250, budget_bytes=1) == 1
    assert gradients.vmap_chunk_size(SimpleNamespace(config=None), 250) is None
    model, batch = tiny_lora_model("llama"), random_batch()
    whole = per_sample_gradients(model, batch)
    seen = []
    real_vmap = torch.func.vmap
    monkeypatch.setattr(torch.func, "vmap", lambda *a, **k: seen.append(k.get("chunk_size")) or real_vmap(*a, **k))
    monkeypatch.setattr(gradients, "VMAP_MEMORY_BYTES", 1)
    monkeypatch.setattr(gradients.vmap_chunk_size, "__defaults__", (1,))
    chunked = per_sample_gradients(model, batch)
    assert seen == [1]
    torch.testing.assert_close(chunked.grads, whole.grads, rtol=1e-5, atol=1e-7)
