"""Model names: a Hugging Face id, a local path, or ``tiny:<arch>`` for the offline tiny-model factory."""

from __future__ import annotations

TINY_PREFIX = "tiny:"


def resolve_model(name: str) -> str:
    """Turn ``tiny:llama`` / ``tiny:gpt2`` into the cached tiny checkpoint's path; other names pass through.

    ``tiny:llama@3`` selects the factory seed. The tiny models are built locally
    (tokenizer trained on the shipped survey texts, random weights) so tests,
    the demo and benchmarks never download anything.
    """
    if not name.startswith(TINY_PREFIX):
        return name
    from demoscope.models.tiny import tiny_model

    arch, _, seed = name[len(TINY_PREFIX):].partition("@")
    return str(tiny_model(arch=arch, seed=int(seed or 0)))


def choose_backend(backend: str, use_gpu: bool) -> str:
    """``auto`` -> ``vllm`` when a GPU is asked for and vLLM is installed, else ``transformers``."""
    if backend != "auto":
        return backend
    try:
        import vllm  # noqa: F401  (GPU environments only)
    except ImportError:
        return "transformers"
    return "vllm" if use_gpu else "transformers"
