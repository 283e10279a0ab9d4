"""Test-session setup: loopback-only Ray, shared by every test that needs it.

The environment is set before anything imports Ray (Ray reads it at import).
"""

import os

from demoscope.pipelines.runtime import LOCAL_ENV

for _key, _value in LOCAL_ENV.items():
    os.environ.setdefault(_key, _value)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray for the whole session (start-up costs seconds)."""
    from demoscope.pipelines.runtime import init_ray

    ray = init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def random_adapter(tmp_path_factory):
    """A LoRA adapter (r=8, q_proj/v_proj) on the tiny Llama with non-zero weights, so it changes answers."""
    import torch

    from demoscope.models import load_causal_lm
    from demoscope.models.names import resolve_model
    from demoscope.training.lora import LoraSettings, apply_lora

    model, _ = load_causal_lm(resolve_model("tiny:llama"))
    model = apply_lora(model, LoraSettings())
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    folder = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(folder)
    return folder
