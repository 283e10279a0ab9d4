"""Load a causal LM, its tokenizer and any LoRA adapters, safetensors only.

One entry point, :func:`load_causal_lm`, used by the scorers, the pipelines
and the demo. It refuses pickle weights (``.bin``), never runs remote code
unless asked, and turns every failure a user can fix (a missing folder, no
safetensors, an adapter folder that is not an adapter) into a
:class:`~demoscope.errors.ModelError` naming the path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from demoscope.errors import ModelError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` becomes ``"cuda"`` when a GPU is visible, else ``"cpu"``; other values pass through."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """``"auto"`` is bfloat16 on CUDA and float32 elsewhere; else one of float32, bfloat16, float16."""
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in _DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}; expected auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def _looks_local(model: str | Path) -> bool:
    """A Path object, or a string that can only be a path (Hub ids are ``name`` or ``org/name``)."""
    text = str(model)
    return isinstance(model, Path) or text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text


def _check_model_dir(path: Path) -> None:
    if not path.is_dir():
        raise ModelError(f"model path {path} does not exist or is not a folder")
    if not (path / "config.json").is_file():
        raise ModelError(f"model folder {path} has no config.json; is it a Hugging Face model folder?")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.safetensors.index.json")):
        found = sorted(p.name for p in path.glob("*.bin")) or sorted(p.name for p in path.iterdir())[:5]
        raise ModelError(
            f"model folder {path} has no safetensors weights (found: {', '.join(found) or 'nothing'}); "
            "Demoscope loads safetensors only; convert with `model.save_pretrained(...)` from a trusted environment"
        )


def _adapter_dirs(adapters: str | Path | list | dict | None) -> dict[str, Path]:
    """Normalise the ``adapters`` argument to ``{name: folder}``; names default to folder names."""
    if adapters is None:
        return {}
    if isinstance(adapters, dict):
        items = [(str(k), Path(v)) for k, v in adapters.items()]
    else:
        paths = [adapters] if isinstance(adapters, (str, Path)) else list(adapters)
        items = [(Path(p).name, Path(p)) for p in paths]
    names = [n for n, _ in items]
    if len(set(names)) != len(names):
        raise ModelError(f"adapter names must be unique, got {names}; pass a dict {{name: path}} to rename")
    for name, path in items:
        if not (path / "adapter_config.json").is_file():
            raise ModelError(f"adapter {name!r}: {path} is not a PEFT adapter folder (no adapter_config.json)")
        if not (path / "adapter_model.safetensors").is_file():
            raise ModelError(f"adapter {name!r}: {path} has no adapter_model.safetensors; safetensors only")
    return dict(items)


def load_causal_lm(
    model: str | Path,
    adapters: str | Path | list[str] | dict[str, str] | None = None,
    dtype: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
    load_in_4bit: bool = False,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` from a local folder or a Hugging Face id, in eval mode.

    ``adapters`` are PEFT LoRA folders: one path, a list (named by folder
    name) or ``{name: path}``; the first becomes active and the model is
    returned as a ``PeftModel``. ``dtype="auto"`` is bfloat16 on CUDA,
    float32 on CPU; ``device="auto"`` is CUDA when available. ``load_in_4bit``
    quantises with bitsandbytes (CUDA only). The tokenizer always has a pad
    token (its EOS if it had none). Raises :class:`ModelError` on a missing
    folder, missing safetensors, or a bad adapter folder.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    if _looks_local(model) or Path(model).exists():
        path = Path(model).expanduser()
        _check_model_dir(path)
        source = str(path)
    else:
        source = str(model)
    adapter_dirs = _adapter_dirs(adapters)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "use_safetensors": True, "trust_remote_code": trust_remote_code}
    if load_in_4bit:
        if not device.startswith("cuda"):
            raise ModelError(f"load_in_4bit needs a CUDA GPU (bitsandbytes); device is {device!r}")
        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError:
            raise ModelError("load_in_4bit needs bitsandbytes; install the project's `gpu` extra") from None
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype
        )
        kwargs["device_map"] = {"": device}
    try:
        lm = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise ModelError(
            f"cannot load model {source!r}: {exc}. A Hub id must already be in the local Hugging Face "
            "cache when HF_HUB_OFFLINE=1"
        ) from None
    if not load_in_4bit:
        lm = lm.to(device)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if adapter_dirs:
        from peft import PeftModel

        (first, first_dir), *rest = adapter_dirs.items()
        lm = PeftModel.from_pretrained(lm, str(first_dir), adapter_name=first, is_trainable=False)
        for name, path in rest:
            lm.load_adapter(str(path), adapter_name=name, is_trainable=False)
        lm.set_adapter(first, inference_mode=True)
    lm.eval()
    return lm, tokenizer
