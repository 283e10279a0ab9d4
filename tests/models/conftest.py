"""Tiny models for the model tests: built once per session into a temporary folder."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from demoscope.models import build_tiny_model, load_causal_lm  # noqa: E402
from demoscope.surveys.metadata import load_codebook  # noqa: E402

STEERS = [
    "Below you will be asked to provide a short description of the region you currently reside in within "
    "the US and then answer some questions.\nDescription: I currently reside in the Northeast.\n\n",
    "Answer the following question as if in politics today, you considered yourself a Democrat.\n\n",
    "Answer the following question as if your political views were Very conservative.\n\n",
]


def mcq(question: str, options: list[str]) -> str:
    """SubPOP's MCQ with answer forcing, ending in 'Answer:' (reference/subpop.md §2.3)."""
    letters = [chr(65 + i) for i in range(len(options))]
    lines = "\n".join(f"{letter}. {o}" for letter, o in zip(letters, options))
    forcing = "Answer as a choice between " + ",".join(f"{letter}." for letter in letters)
    return f"Question: {question}\n{lines}\n{forcing}\n\nAnswer:"


@pytest.fixture(scope="session")
def survey_prompts() -> tuple[list[str], list[int]]:
    """Prompts that share long steering prefixes (3 groups x 5 questions) plus odd ones, with option counts."""
    book = list(load_codebook("opinionqa").values())[:5]
    prompts, n_options = [], []
    for steer in STEERS:
        for entry in book:
            prompts.append(steer + mcq(entry.question, list(entry.options)))
            n_options.append(len(entry.ordinal))
    # No shared prefix; one prompt a prefix of another; a duplicate; a one-token prompt.
    odd = ["Answer:", "Question: Is the sky blue?\nA. Yes\nB. No\n\nAnswer:", "Question: Is the sky blue?",
           prompts[0], "Hi"]
    return prompts + odd, n_options + [2, 2, 3, 4, 26]


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "llama", arch="llama", seed=0)


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "gpt2", arch="gpt2", seed=0)


@pytest.fixture(scope="session")
def llama(llama_dir):
    return load_causal_lm(llama_dir, device="cpu")


@pytest.fixture(scope="session")
def gpt2(gpt2_dir):
    return load_causal_lm(gpt2_dir, device="cpu")


@pytest.fixture(scope="session")
def adapter_dir(llama_dir, tmp_path_factory):
    """A LoRA adapter (r=8, q_proj/v_proj, SubPOP's settings) with perturbed, non-zero weights."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(llama_dir, use_safetensors=True)
    peft_model = get_peft_model(base, LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"]))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:  # lora_B starts at zero (a no-op adapter); make it matter
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    out = tmp_path_factory.mktemp("adapters") / "a"
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def peft_llama(llama_dir, adapter_dir):
    return load_causal_lm(llama_dir, adapters={"a": adapter_dir}, device="cpu")
