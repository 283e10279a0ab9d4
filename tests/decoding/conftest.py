"""Tiny offline models for the decoding tests: a large Llama, small GPT-2 pairs with the same and another tokenizer."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from demoscope.decoding import Guide  # noqa: E402
from demoscope.models import build_tiny_model, load_causal_lm, tiny_model  # noqa: E402


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine spinning threads
    make these tests many times slower; restore the setting for the rest of the session."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def boost_eos(model, eos_id: int, bias: float):
    """Give the LM head a bias towards EOS so random tiny models actually finish responses."""
    head = model.lm_head
    boosted = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    boosted.weight = head.weight
    with torch.no_grad():
        boosted.bias.zero_()
        boosted.bias[eos_id] = bias
    model.lm_head = boosted
    return model


@pytest.fixture(scope="session")
def large():
    """(model, tokenizer): the "large" model, a tiny Llama (vocab 2048)."""
    return load_causal_lm(tiny_model("llama", seed=0), device="cpu")


@pytest.fixture(scope="session")
def eos_large():
    """The tiny Llama with EOS made likely (about 7% a step), so responses stop at different lengths."""
    model, tok = load_causal_lm(tiny_model("llama", seed=0), device="cpu")
    return boost_eos(model, tok.eos_token_id, 5.0), tok


@pytest.fixture(scope="session")
def guide():
    """Tuned/untuned tiny GPT-2s sharing the large model's vocabulary (the reference's gpt2 family setting)."""
    tuned, tok = load_causal_lm(tiny_model("gpt2", seed=1), device="cpu")
    untuned, _ = load_causal_lm(tiny_model("gpt2", seed=2), device="cpu")
    return Guide.from_models(tuned, untuned, tok)


@pytest.fixture(scope="session")
def other_guide(tmp_path_factory):
    """Tuned/untuned tiny GPT-2s with a different (1024-token) tokenizer than the large model's."""
    root = tmp_path_factory.mktemp("small1024")
    tuned, tok = load_causal_lm(build_tiny_model(root / "tuned", arch="gpt2", seed=1, vocab_size=1024), device="cpu")
    untuned, _ = load_causal_lm(build_tiny_model(root / "untuned", arch="gpt2", seed=2, vocab_size=1024), device="cpu")
    return Guide.from_models(tuned, untuned, tok)
