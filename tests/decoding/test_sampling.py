"""Sampling controls on hand-made logits: temperature, top-k, top-p as transformers' warpers; seeded draws."""

import math

import pytest
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from demoscope.decoding import SamplingParams, derive_seed, make_generator, process_logits, sample_tokens
from demoscope.errors import ConfigError

NEG = float("-inf")


def test_temperature_divides_logits():
    logits = torch.tensor([[1.0, 2.0, 4.0]])
    out = process_logits(logits, SamplingParams(temperature=0.5, top_k=None))
    assert torch.equal(out, torch.tensor([[2.0, 4.0, 8.0]]))


def test_top_k_keeps_the_k_largest_and_ties_with_the_kth():
    logits = torch.tensor([[3.0, 1.0, 2.0, 2.0, 0.0]])
    out = process_logits(logits, SamplingParams(temperature=1.0, top_k=2))
    # The 2nd largest value is 2.0 and both tokens holding it survive, as in HF's TopKLogitsWarper.
    assert out.tolist() == [[3.0, NEG, 2.0, 2.0, NEG]]


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()

    def kept(p):
        return torch.isfinite(process_logits(logits, SamplingParams(temperature=1.0, top_k=None, top_p=p)))[0].tolist()

    assert kept(0.5) == [True, False, False, False]
    assert kept(0.6) == [True, True, False, False]
    assert kept(0.9) == [True, True, True, False]
    assert kept(0.01) == [True, False, False, False]  # the top token always survives
    assert kept(1.0) == [True] * 4


def test_chain_matches_transformers_warpers():
    logits = torch.randn(4, 300, generator=torch.Generator().manual_seed(0))
    params = SamplingParams(temperature=0.7, top_k=50, top_p=0.6)
    want = logits.clone()
    for warper in (TemperatureLogitsWarper(0.7), TopKLogitsWarper(50), TopPLogitsWarper(0.6)):
        want = warper(None, want)
    got = process_logits(logits, params)
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    torch.testing.assert_close(got[torch.isfinite(got)], want[torch.isfinite(want)])
    assert 1 < int(torch.isfinite(got[0]).sum()) < 50


def test_draws_follow_the_warped_distribution_and_never_pick_filtered_tokens():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 5.0]]).repeat(20000, 1)
    params = SamplingParams(temperature=2.0, top_k=3)
    tokens = sample_tokens(logits, params, make_generator(0))
    counts = torch.bincount(tokens, minlength=5).double() / len(tokens)
    want = torch.softmax(torch.tensor([2.0, 1.0, NEG, NEG, 5.0]) / 2.0, -1).double()
    assert counts[2] == 0 and counts[3] == 0
    torch.testing.assert_close(counts, want, atol=0.015, rtol=0)


def test_greedy_and_seeded_draws():
    logits = torch.randn(8, 100, generator=torch.Generator().manual_seed(1))
    assert torch.equal(sample_tokens(logits, SamplingParams(temperature=0.0), make_generator(0)), logits.argmax(-1))
    params = SamplingParams(temperature=1.0, top_k=None)
    a = sample_tokens(logits, params, make_generator(5))
    assert torch.equal(a, sample_tokens(logits, params, make_generator(5)))
    assert not torch.equal(a, sample_tokens(logits, params, make_generator(6)))


def test_params_validation_and_seed_derivation():
    for bad in ({"temperature": -1.0}, {"temperature": math.inf}, {"top_k": 0}, {"top_p": 0.0}, {"top_p": 1.5},
                {"max_new_tokens": 0}):
        with pytest.raises(ConfigError):
            SamplingParams(**bad)
    defaults = SamplingParams()
    assert (defaults.temperature, defaults.top_k, defaults.top_p, defaults.max_new_tokens) == (0.7, 50, 1.0, 50)
    assert derive_seed(1, "a prompt") == derive_seed(1, "a prompt")
    assert len({derive_seed(1, "a"), derive_seed(1, "b"), derive_seed(2, "a")}) == 3
