"""generate(): the method names and seed defaults, per-prompt results, guidance scores, reproducibility."""

import pytest

from demoscope.decoding import SEED_METHODS, DecodingMethod, SamplingParams, generate, guidance_scores
from demoscope.decoding.lm import response_text
from demoscope.decoding.methods import IMDB_BASE_TEMPLATE
from demoscope.errors import ConfigError

PROMPTS = ["I really", "The film was", "I really"]
PARAMS = SamplingParams(max_new_tokens=10)  # the seed's sampling: temperature 0.7, top-k 50, seed 1


def test_method_names_parse_and_seed_defaults():
    assert [m.label for m in SEED_METHODS] == ["base", "bon16", "bon32", "cbs-w4k4l5", "eft-beta1.0"]
    assert DecodingMethod.parse("bon") == DecodingMethod("bon", n=16)
    assert DecodingMethod.parse("BoN32") == DecodingMethod.parse("bon:32") == DecodingMethod("bon", n=32)
    assert DecodingMethod.parse("cbs") == DecodingMethod("cbs", w=4, k=4, l=5)
    assert DecodingMethod.parse("cbs:2,2,inf").search_shape() == (2, 2, None)
    assert DecodingMethod.parse("eft:0.5").beta == 0.5 and DecodingMethod.parse("eft").beta == 1.0
    assert DecodingMethod("bon", n=8).search_shape() == (1, 8, None)
    assert DecodingMethod("base").search_shape() == (1, 1, None)
    for bad in ("beam", "bon:x", "cbs:4,4", "base:3"):
        with pytest.raises(ConfigError):
            DecodingMethod.parse(bad)
    with pytest.raises(ConfigError, match="L must be"):
        DecodingMethod("cbs", l=0)


@pytest.mark.parametrize("method", ["base", "bon:4", "cbs:2,2,3", "eft:1.0"])
def test_every_method_returns_text_ids_and_exact_guidance(method, large, guide):
    model, tok = large
    results = generate(method, PROMPTS, (model, tok), guide, PARAMS, large_template=IMDB_BASE_TEMPLATE)
    assert [r.prompt for r in results] == PROMPTS
    for r in results:
        assert r.method == DecodingMethod.parse(method).label
        assert 1 <= len(r.token_ids) <= 10 and r.finish_reason in ("stop", "length")
        prompt_ids = tok(IMDB_BASE_TEMPLATE.format(raw_prompt=r.prompt), add_special_tokens=False)["input_ids"]
        assert r.text == response_text(tok, prompt_ids, r.token_ids) and r.text
        want = float(guidance_scores(guide, r.prompt, [r.text], [True])[0])
        assert r.guidance == pytest.approx(want, abs=2e-5)
    # Seeds come from the prompt text: a repeated prompt gets the same sample, whatever else is in the batch.
    assert results[0].token_ids == results[2].token_ids
    alone = generate(method, ["I really"], (model, tok), guide, PARAMS, large_template=IMDB_BASE_TEMPLATE)
    assert alone[0].token_ids == results[0].token_ids
    other_seed = generate(method, ["I really"], (model, tok), guide, SamplingParams(max_new_tokens=10, seed=2),
                          large_template=IMDB_BASE_TEMPLATE)
    assert other_seed[0].token_ids != results[0].token_ids


def test_guided_methods_beat_base_on_guidance_on_average(large, guide):
    # The search maximises the guidance score, so it must not do worse than unguided samples on it.
    model, tok = large
    prompts = ["I really", "The film was", "Honestly", "I think"]
    base = generate("base", prompts, (model, tok), guide, PARAMS)
    bon = generate("bon:8", prompts, (model, tok), guide, PARAMS)
    assert sum(r.guidance for r in bon) > sum(r.guidance for r in base)


def test_explicit_seeds_and_missing_pieces(large, guide):
    model, tok = large
    a = generate("base", ["I really", "I really"], (model, tok), None, PARAMS, seeds=[1, 2])
    assert a[0].token_ids != a[1].token_ids and a[0].guidance is None
    with pytest.raises(ConfigError, match="needs a guide"):
        generate("cbs", ["I really"], (model, tok), None, PARAMS)
    with pytest.raises(ConfigError, match="seeds"):
        generate("base", ["a", "b"], (model, tok), None, PARAMS, seeds=[1])
