"""Survey waves or topics as data sources: which SubPOP-style training data are worth fine-tuning on?

Each row of a prepared opinion split becomes one sample: its prompt, and as
the target the letter (``" A"``, ...) of the option most of its group chose.
A sample's output is that letter's clamped log-odds (the reference's
instruction-tuning clamp), so the GradEx machinery (per-sample gradients,
first-order subset estimates, validation loss on held-out questions) applies
unchanged. Sources are waves (``..._W92`` question keys; GSS questions form
one source), topics (:mod:`demoscope.surveys.topics`), or any other labels of
the rows. The validation rows can be narrowed to target groups and questions
(:func:`target_rows`), so the question becomes "which waves help most for
these subpopulations on these questions?".
"""

from __future__ import annotations

import fnmatch
import re
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import numpy as np
import pandas as pd
import torch

from demoscope.errors import ConfigError
from demoscope.selection.gradients import gradient_dim, gradient_parameter_names
from demoscope.selection.projection import RademacherProjection
from demoscope.selection.toy import SelectionWorld, ToySettings, batches
from demoscope.selection.toy import train as train_steps

_WAVE = re.compile(r"_W(\d+)$")
SourceKind = Literal["wave", "topic"]
_DEFAULT_SETTINGS = ToySettings()  # frozen: safe to share as build_opinion_world's default


def wave_of(qkey: str) -> str:
    """``"GUNLOCKED2_W26"`` -> ``"W26"``; a key without a wave suffix (GSS) -> ``"GSS"``."""
    match = _WAVE.search(str(qkey))
    return f"W{match.group(1)}" if match else "GSS"


def source_labels(frame: pd.DataFrame, by: SourceKind = "wave", topics: str | None = None) -> pd.Series:
    """The source of every row: its wave, or its question's topic (``topics``: a topics file, default built-in)."""
    if by == "wave":
        return frame["qkey"].map(wave_of).rename("source")
    if by == "topic":
        from demoscope.surveys.topics import load_topics, topics_of

        return topics_of(frame, load_topics(topics)).rename("source")
    raise ConfigError(f"unknown source kind {by!r}; expected wave or topic")


def target_rows(frame: pd.DataFrame, groups: Sequence[str] = (), questions: Sequence[str] = ()) -> pd.DataFrame:
    """The rows of a split that a selection targets: some groups and/or questions (all when both are empty).

    ``groups`` are group names (``"Democrat"``) or ``ATTRIBUTE=group``
    (``"POLPARTY=Democrat"``, as ``survey-pairs`` writes them); ``questions``
    are question keys or shell-style patterns (``"GUN*"``). A name that
    matches nothing is an error listing the valid ones, so a typo never
    silently narrows the target to nothing.
    """
    keep = pd.Series(True, index=frame.index)
    if groups:
        labels = frame["attribute"].astype(str) + "=" + frame["group"].astype(str)
        wanted = pd.Series(False, index=frame.index)
        for name in groups:
            hit = (labels == name) | (frame["group"].astype(str) == name)
            if not hit.any():
                raise ConfigError(f"target group {name!r} is not in the validation split; groups there: "
                                  f"{sorted(frame['group'].astype(str).unique())}")
            wanted |= hit
        keep &= wanted
    if questions:
        qkeys = frame["qkey"].astype(str)
        wanted = pd.Series(False, index=frame.index)
        for pattern in questions:
            hit = qkeys.map(lambda q, pattern=pattern: fnmatch.fnmatchcase(q, pattern))
            if not hit.any():
                raise ConfigError(f"target question {pattern!r} matches no question of the validation split; "
                                  f"e.g. {sorted(qkeys.unique())[:10]}")
            wanted |= hit
        keep &= wanted
    rows = frame[keep]
    if rows.empty:
        raise ConfigError("no validation row belongs to both the target groups and the target questions")
    return rows


def modal_targets(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose ``output_dist`` is one-hot at each row's modal option: what the estimates model, as a split."""
    onehot = [list(np.eye(len(d))[int(np.argmax(d))]) for d in frame["output_dist"]]
    return frame.assign(output_dist=onehot)


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
    settings: ToySettings = _DEFAULT_SETTINGS, labels: pd.Series | None = None,
) -> SelectionWorld:
    """A selection world over ``train``'s sources, validated on ``val`` (prepared splits).

    ``labels`` names the source of every row of ``train`` (default: its
    wave, see :func:`source_labels`). With ``adapter`` (e.g. OUT/adapter of
    ``demoscope train``) that adapter is the meta-trained model; without, a
    fresh LoRA adapter is meta-trained on all sources for
    ``settings.meta_steps`` steps.
    """
    from demoscope.models import load_causal_lm
    from demoscope.models.names import resolve_model
    from demoscope.training.lora import LoraSettings, apply_lora

    settings = replace(settings, clamp="instruction")  # letter probabilities can be tiny: clamp, don't NaN
    model, tokenizer = load_causal_lm(resolve_model(model_name), adapters={"meta": adapter} if adapter else None)
    labels = source_labels(train) if labels is None else labels
    sources: dict[str, list] = {}
    for source, rows in train.groupby(labels.reindex(train.index), sort=True):
        sources[str(source)] = opinion_examples(rows, tokenizer)
    if adapter:
        for name, param in model.named_parameters():
            param.requires_grad = "lora_" in name
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)  # seeds the adapter's initialisation too: same seed, same world
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                model = apply_lora(model, LoraSettings(r=settings.lora_r, alpha=settings.lora_alpha, dropout=0.0))
            train_steps(model, [ex for exs in sources.values() for ex in exs], settings.meta_steps, lr=5e-3,
                  batch_size=settings.batch_size, seed=settings.seed)
    model.eval()
    names = gradient_parameter_names(model)
    projection = RademacherProjection(gradient_dim(model, names), settings.project_dim, seed=settings.seed)
    val_batches = {"validation": batches(opinion_examples(val, tokenizer), settings.batch_size)}
    return SelectionWorld(model, sources, [], val_batches, names, projection, settings)
