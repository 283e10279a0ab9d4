"""Fixtures for the distillation tests: one torch thread, tiny teachers, a tiny BERT classifier."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; two threads on shared cores are many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def llama_teacher():
    from demoscope.models import load_causal_lm, tiny_model

    return load_causal_lm(tiny_model("llama"), device="cpu")


@pytest.fixture(scope="session")
def gpt2_teacher():
    from demoscope.models import load_causal_lm, tiny_model

    return load_causal_lm(tiny_model("gpt2"), device="cpu")


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory):
    from demoscope.distill import build_tiny_classifier

    return build_tiny_classifier(tmp_path_factory.mktemp("classifier") / "tiny-bert", seed=0)


@pytest.fixture(scope="session")
def reviews():
    """Train and held-out planted-bias reviews (text, label)."""
    from demoscope.bias import synthetic_sentiment

    return synthetic_sentiment(400, seed=0), synthetic_sentiment(400, seed=1)
