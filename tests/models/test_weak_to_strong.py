import numpy as np
import pytest

from demoscope.models import TransformersOptionScorer, load_causal_lm
from demoscope.models.names import resolve_model
from demoscope.models.weak_to_strong import WeakToStrongScorer, reweight


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


def test_scorer_steers_a_gpt2_with_a_llama_pair(random_adapter):
    """Different tokenizers: each scorer encodes the prompt itself."""
    large_lm, large_tok = load_causal_lm(resolve_model("tiny:gpt2"))
    small_lm, small_tok = load_causal_lm(resolve_model("tiny:llama"), adapters={"tuned": str(random_adapter)})
    large = TransformersOptionScorer(large_lm, large_tok)
    tuned = TransformersOptionScorer(small_lm, small_tok, adapter="tuned")
    untuned = TransformersOptionScorer(small_lm, small_tok, adapter=None)
    prompts = ["Question: Is it?\nA. Yes\nB. No\nC. Maybe\nAnswer as a choice between A.,B.,C.\n\nAnswer:"] * 2
    steered = WeakToStrongScorer(large, tuned, untuned, beta=1.0)
    dists, masses = steered.score_with_mass(prompts, [3, 2])
    for got, n in zip(dists, (3, 2)):
        assert got.shape == (n,) and got.sum() == pytest.approx(1.0)
    expected = reweight(large.score(prompts[:1], [3])[0], tuned.score(prompts[:1], [3])[0], untuned.score(prompts[:1], [3])[0], 1.0)
    assert np.allclose(dists[0], expected)
    assert not np.allclose(dists[0], large.score(prompts[:1], [3])[0], atol=1e-4)  # the pair moved it
    assert (masses > 0).all()
