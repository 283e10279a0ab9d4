"""Survey waves as data sources: which waves of SubPOP-style training data are worth fine-tuning on?

Each row of a prepared opinion split becomes one sample: its prompt, and as
the target the letter (``" A"``, ...) of the option most of its group chose.
A sample's output is that letter's clamped log-odds (the reference's
instruction-tuning clamp), so the GradEx machinery (per-sample gradients,
first-order subset estimates, validation loss on held-out questions) applies
unchanged. Sources are waves (``..._W92`` question keys; GSS questions form
one source), or any other grouping of rows passed as ``source_of``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from demoscope.selection.gradients import gradient_dim, gradient_parameter_names
from demoscope.selection.projection import RademacherProjection
from demoscope.selection.toy import SelectionWorld, ToySettings, batches
from demoscope.selection.toy import train as train_steps

_WAVE = re.compile(r"_W(\d+)$")


def wave_of(qkey: str) -> str:
    """``"GUNLOCKED2_W26"`` -> ``"W26"``; a key without a wave suffix (GSS) -> ``"GSS"``."""
    match = _WAVE.search(str(qkey))
    return f"W{match.group(1)}" if match else "GSS"


def opinion_examples(frame: pd.DataFrame, tokenizer) -> list[tuple[list[int], list[int]]]:
    """``(input_ids, labels)`` per row: the prompt plus its modal answer letter, only the letter scored."""
    from demoscope.models import encode_prompts, letter_token_ids

    _, spaced = letter_token_ids(tokenizer)
    prompts = encode_prompts(tokenizer, list(frame["input_prompt"]))
    examples = []
    for ids, dist in zip(prompts, frame["output_dist"]):
        letter = spaced[int(np.argmax(dist))]
        examples.append((list(ids) + [letter], [-100] * len(ids) + [letter]))
    return examples


def build_opinion_world(
    train: pd.DataFrame, val: pd.DataFrame, model_name: str, adapter: str | None = None,
    settings: ToySettings = ToySettings(), source_of: Callable[[str], str] = wave_of,
) -> SelectionWorld:
    """A selection world over ``train``'s sources, validated on ``val`` (prepared splits).

    With ``adapter`` (e.g. OUT/adapter of ``demoscope train``) that adapter is
    the meta-trained model; without, a fresh LoRA adapter is meta-trained on
    all sources for ``settings.meta_steps`` steps.
    """
    from demoscope.models import load_causal_lm
    from demoscope.models.names import resolve_model
    from demoscope.training.lora import LoraSettings, apply_lora

    settings = replace(settings, clamp="instruction")  # letter probabilities can be tiny: clamp, don't NaN
    model, tokenizer = load_causal_lm(resolve_model(model_name), adapters={"meta": adapter} if adapter else None)
    sources: dict[str, list] = {}
    for source, rows in train.groupby(train["qkey"].map(source_of), sort=True):
        sources[str(source)] = opinion_examples(rows, tokenizer)
    if adapter:
        for name, param in model.named_parameters():
            param.requires_grad = "lora_" in name
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = apply_lora(model, LoraSettings(r=settings.lora_r, alpha=settings.lora_alpha, dropout=0.0))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            train_steps(model, [ex for exs in sources.values() for ex in exs], settings.meta_steps, lr=5e-3,
                  batch_size=settings.batch_size, seed=settings.seed)
    model.eval()
    names = gradient_parameter_names(model)
    projection = RademacherProjection(gradient_dim(model, names), settings.project_dim, seed=settings.seed)
    val_batches = {"validation": batches(opinion_examples(val, tokenizer), settings.batch_size)}
    return SelectionWorld(model, sources, [], val_batches, names, projection, settings)
