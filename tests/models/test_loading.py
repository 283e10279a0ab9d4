"""load_causal_lm: safetensors only, typed errors naming the path, PEFT adapters by name."""

import json
import shutil

import numpy as np
import pytest

from demoscope.errors import DemoscopeError, ModelError
from demoscope.models import TransformersOptionScorer, load_causal_lm


def test_loads_a_plain_model_in_eval_mode_on_cpu_in_float32(llama):
    model, tok = llama
    assert not model.training
    assert model.device.type == "cpu" and str(model.dtype) == "torch.float32"
    assert tok.pad_token is not None


def test_an_adapter_changes_scores_and_no_adapter_means_the_base_model(peft_llama, llama, survey_prompts):
    prompts, n_options = survey_prompts
    peft_model, tok = peft_llama
    assert set(peft_model.peft_config) == {"a"}
    with_a = TransformersOptionScorer(peft_model, tok, adapter="a").score(prompts, n_options)
    without = TransformersOptionScorer(peft_model, tok, adapter=None).score(prompts, n_options)
    plain = TransformersOptionScorer(*llama).score(prompts, n_options)
    assert max(np.abs(a - b).max() for a, b in zip(with_a, without)) > 1e-3
    for a, b in zip(without, plain):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # Switching back after the base-model pass gives the adapter's numbers again.
    again = TransformersOptionScorer(peft_model, tok, adapter="a").score(prompts, n_options)
    for a, b in zip(with_a, again):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_adapters_given_as_a_list_are_named_by_folder(llama_dir, adapter_dir, tmp_path):
    second = tmp_path / "second"
    shutil.copytree(adapter_dir, second)
    model, _ = load_causal_lm(llama_dir, adapters=[str(adapter_dir), str(second)], device="cpu")
    assert set(model.peft_config) == {"a", "second"} and model.active_adapter == "a"
    assert not any(p.requires_grad for p in model.parameters())


def test_unknown_adapter_name_is_a_model_error(peft_llama, llama):
    with pytest.raises(ModelError, match="unknown adapter 'b'.*'a'"):
        TransformersOptionScorer(*peft_llama, adapter="b")
    with pytest.raises(ModelError, match="no adapters"):
        TransformersOptionScorer(*llama, adapter="a")


def test_missing_model_path_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelError, match=str(missing)) as err:
        load_causal_lm(missing)
    assert isinstance(err.value, DemoscopeError)


def test_pickle_only_weights_are_refused_naming_the_folder(llama_dir, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(llama_dir / "config.json", folder)
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelError, match=rf"{folder}.*no safetensors.*pytorch_model\.bin"):
        load_causal_lm(folder)


def test_bad_adapter_folders_are_model_errors(llama_dir, adapter_dir, tmp_path):
    with pytest.raises(ModelError, match=r"not a PEFT adapter folder"):
        load_causal_lm(llama_dir, adapters={"x": tmp_path})
    pickled = tmp_path / "pickled"
    shutil.copytree(adapter_dir, pickled)
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    with pytest.raises(ModelError, match=rf"{pickled}.*safetensors only"):
        load_causal_lm(llama_dir, adapters=str(pickled))


def test_4bit_needs_cuda_and_bad_dtype_is_named(llama_dir):
    with pytest.raises(ModelError, match="CUDA"):
        load_causal_lm(llama_dir, device="cpu", load_in_4bit=True)
    with pytest.raises(ModelError, match="float8"):
        load_causal_lm(llama_dir, dtype="float8")


def test_a_tokenizer_without_pad_token_gets_eos(llama_dir, tmp_path):
    folder = tmp_path / "nopad"
    shutil.copytree(llama_dir, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("pad_token")
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    _, tok = load_causal_lm(folder, device="cpu")
    assert tok.pad_token == tok.eos_token == "</s>"
