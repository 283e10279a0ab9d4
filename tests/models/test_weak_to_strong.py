import numpy as np
import pytest

from demoscope.models import TransformersOptionScorer, load_causal_lm
from demoscope.models.names import resolve_model
from demoscope.models.weak_to_strong import reweight, steer, weak_to_strong_scorers


def test_beta_zero_gives_the_large_model_back():
    large = [0.5, 0.3, 0.2]
    assert np.allclose(reweight(large, [0.1, 0.1, 0.8], [0.3, 0.3, 0.4], beta=0.0), large)


def test_uniform_large_model_takes_the_small_pairs_ratio():
    tuned, untuned = np.array([0.6, 0.3, 0.1]), np.array([0.2, 0.3, 0.5])
    ratio = tuned / untuned
    assert np.allclose(reweight([1 / 3] * 3, tuned, untuned, beta=1.0), ratio / ratio.sum())


def test_hand_computed_case_and_zero_probabilities():
    # log p = log(.5,.5) + 2 * log((.8,.2)/(.5,.5)) -> weights .5*2.56, .5*.16 -> (.9412, .0588)
    assert np.allclose(reweight([0.5, 0.5], [0.8, 0.2], [0.5, 0.5], beta=2.0), [2.56 / 2.72, 0.16 / 2.72])
    steered = reweight([0.0, 1.0], [0.5, 0.5], [0.5, 0.5], beta=1.0)
    assert np.isfinite(steered).all() and steered[1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ in length"):
        reweight([0.5, 0.5], [1.0], [1.0], beta=1.0)


def test_steer_reweights_each_question_and_checks_the_lists_match():
    large, tuned, untuned = [[0.5, 0.5], [0.2, 0.3, 0.5]], [[0.8, 0.2], [0.1, 0.1, 0.8]], [[0.5, 0.5], [0.3, 0.3, 0.4]]
    got = steer(large, tuned, untuned, beta=2.0)
    assert len(got) == 2 and [g.shape for g in got] == [(2,), (3,)]
    for g, a, b, c in zip(got, large, tuned, untuned):
        assert np.allclose(g, reweight(a, b, c, 2.0))
    with pytest.raises(ValueError, match="1 untuned"):
        steer(large, tuned, untuned[:1], beta=1.0)


PROMPTS = ["Question: Is it?\nA. Yes\nB. No\nC. Maybe\nAnswer as a choice between A.,B.,C.\n\nAnswer:"] * 2


def test_scorers_steer_a_gpt2_with_a_llama_pair(random_adapter):
    """Different tokenizers: each scorer encodes the prompt itself; the pair is one model, adapter on and off."""
    gpt2, llama = resolve_model("tiny:gpt2"), resolve_model("tiny:llama")
    scorers = weak_to_strong_scorers(gpt2, llama, str(random_adapter), "transformers", batch_size=4)
    assert list(scorers) == ["large", "small_tuned", "small_untuned"]
    assert scorers["small_tuned"].model is scorers["small_untuned"].model
    alone = {"large": TransformersOptionScorer(*load_causal_lm(gpt2)),
             "small_untuned": TransformersOptionScorer(*load_causal_lm(llama)),
             "small_tuned": TransformersOptionScorer(*load_causal_lm(llama, adapters={"t": str(random_adapter)}),
                                                     adapter="t")}
    dists = {name: scorer.score(PROMPTS, [3, 2]) for name, scorer in scorers.items()}
    for name, scorer in alone.items():
        for got, want in zip(dists[name], scorer.score(PROMPTS, [3, 2])):
            assert np.allclose(got, want, atol=1e-6)
    steered = steer(dists["large"], dists["small_tuned"], dists["small_untuned"], beta=1.0)
    for got, n in zip(steered, (3, 2)):
        assert got.shape == (n,) and got.sum() == pytest.approx(1.0)
    assert not np.allclose(steered[0], dists["large"][0], atol=1e-4)  # the pair moved it


def test_on_vllm_only_the_large_model_starts_an_engine(llama, adapter_dir, monkeypatch):
    from demoscope.models.vllm_fake import FakeLLM, FakeSamplingParams
    from demoscope.models.vllm_scoring import VLLMOptionScorer

    engines = []

    # vLLM's engine start, faked over torch
    def create(path, adapters=None, letter_logprobs="auto", top_k=128, letter_rule="sum"):
        engines.append((path, adapters, letter_logprobs, top_k))
        return VLLMOptionScorer(FakeLLM(*llama), letter_logprobs=letter_logprobs, top_k=top_k,
                                letter_rule=letter_rule,
                                sampling_params_cls=FakeSamplingParams)

    monkeypatch.setattr(VLLMOptionScorer, "create", staticmethod(create))
    small = resolve_model("tiny:llama")
    scorers = weak_to_strong_scorers("any/large", small, str(adapter_dir), "vllm", letter_logprobs="top-k", top_k=64)
    assert engines == [("any/large", None, "top-k", 64)]
    assert isinstance(scorers["large"], VLLMOptionScorer) and scorers["large"].lora_request is None
    assert [type(scorers[n]) for n in ("small_tuned", "small_untuned")] == [TransformersOptionScorer] * 2
    assert scorers["small_tuned"].adapter is not None and scorers["small_untuned"].adapter is None
