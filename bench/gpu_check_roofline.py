"""Measuring for ``bench/gpu_check.py``: synchronised timers, the card's measured matmul rate (the roofline),
the model built from its config on the device, token positions counted by hooks, the JSON written atomically.
"""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from gpu_check_inputs import BOS_ID, EOS_ID, PAD_ID

# Dense bf16 tensor-core peaks from NVIDIA's datasheets, matched on the device name in this order.
NOMINAL_BF16 = (("H100 PCIe", 756e12), ("H200", 989e12), ("H100", 989e12), ("A100", 312e12))
# Model shapes. "1b" is Llama-3.2-1B's (rope scaling left out: it changes no cost).
SHAPES: dict[str, dict[str, int]] = {
    "1b": {"vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
           "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64},
    "tiny": {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16},
}



def sync(device: torch.device) -> None:
    """Wait for queued kernels, so wall-clock timings cover the GPU work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``(fn(), seconds)``, synchronised on both sides."""
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return result, time.perf_counter() - start


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (a temp file in the same folder, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rate_text(flops_per_s: float) -> str:
    """A FLOP rate in TFLOP/s, or GFLOP/s below one TFLOP/s (CPU)."""
    return f"{flops_per_s / 1e12:.1f} TFLOP/s" if flops_per_s >= 1e12 else f"{flops_per_s / 1e9:.1f} GFLOP/s"


def share(flops: float, seconds: float, peak: float) -> float:
    """Achieved rate ``flops / seconds`` as a fraction of ``peak``."""
    return flops / seconds / peak


def peak_memory_mib(device: torch.device) -> float | None:
    """Peak GPU memory allocated since the last reset (None on CPU)."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def reset_peak_memory(device: torch.device) -> None:
    """Start a section's peak-memory count afresh."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


# -- machine, model, roofline -----------------------------------------------------------------------------------


def machine_info(device: torch.device) -> dict[str, Any]:
    """Device name, library versions and core count, for the JSON and the first printed line."""
    import peft
    import transformers

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or 'cpu'})"
    return {"device": str(device), "name": name, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "transformers": transformers.__version__, "peft": peft.__version__}


def nominal_rate(name: str, dtype: torch.dtype) -> float | None:
    """The datasheet's dense bf16 rate for a known GPU name, else None."""
    if dtype != torch.bfloat16:
        return None
    return next((rate for key, rate in NOMINAL_BF16 if key in name), None)


def measure_matmul_rate(device: torch.device, dtype: torch.dtype, n: int, iters: int = 20, rounds: int = 5) -> float:
    """FLOP/s of ``n x n`` matmuls in ``dtype``: warm-up, then the best of ``rounds`` timed batches of ``iters``."""
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    c = torch.empty(n, n, device=device, dtype=dtype)
    for _ in range(3):  # warm-up: cuBLAS picks its kernel, clocks ramp up
        torch.matmul(a, b, out=c)
    best = math.inf
    for _ in range(rounds):
        _, seconds = timed(lambda: [torch.matmul(a, b, out=c) for _ in range(iters)], device)
        best = min(best, seconds)
    return 2.0 * n**3 * iters / best


def build_model(config_name: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """A seeded random Llama of the named shape, built from its config directly on ``device``."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**SHAPES[config_name], max_position_embeddings=4096, tie_word_embeddings=True,
                         pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID)
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the GPU: a 1.2B CPU init would cost tens of seconds
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.to(device).eval()


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """``total`` (tied embedding once), ``head`` (the vocabulary projection) and ``body`` (the rest but embeddings)."""
    total = sum(p.numel() for p in model.parameters())
    head = model.get_output_embeddings().weight.numel()
    body = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n and "lm_head" not in n)
    return {"total": total, "head": head, "body": body}


class PositionCounter:
    """Count what a model's forwards run, whatever the caller batches: token positions in, positions projected.

    Hooks on the input embedding (every position of every row, padding
    included) and on the output head (the positions whose logits are
    computed), so the figures follow the library's batching without
    re-deriving its plan. Use it around an untimed run.
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.body = self.head = self.passes = 0

    def __enter__(self) -> PositionCounter:
        def count_body(_module: Any, inputs: tuple[torch.Tensor, ...], _output: Any) -> None:
            self.body += inputs[0].numel()
            self.passes += 1

        def count_head(_module: Any, inputs: tuple[torch.Tensor, ...], _output: Any) -> None:
            self.head += inputs[0].numel() // inputs[0].shape[-1]

        self._hooks = [self.model.get_input_embeddings().register_forward_hook(count_body),
                       self.model.get_output_embeddings().register_forward_hook(count_head)]
        return self

    def __exit__(self, *exc: object) -> None:
        for hook in self._hooks:
            hook.remove()
