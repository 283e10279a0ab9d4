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


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """Train/val/test Parquet splits (QA steering) of a one-wave synthetic world, 12 questions."""
    from demoscope.surveys import AggregateInputs, aggregate_files, load_subpopulations
    from demoscope.surveys.finetuning import prepare_splits
    from demoscope.surveys.synthetic import generate_world

    root = tmp_path_factory.mktemp("prepared")
    world = generate_world(root / "world", waves=1, respondents=800, seed=11, gss=False, questions_per_wave=12)
    inputs = AggregateInputs.build(load_subpopulations("22"), codebook_path=str(world.codebook_path))
    distributions, _ = aggregate_files(world.files, inputs)
    splits = prepare_splits(distributions, "QA", ratios=(0.6, 0.2, 0.2), seed=1)
    paths = {}
    for name, frame in splits.items():
        paths[name] = root / f"opnqa_QA_{name}.parquet"
        frame.to_parquet(paths[name], index=False)
    return paths
