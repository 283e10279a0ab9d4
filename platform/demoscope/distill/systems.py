"""Score any sentiment "system" on texts as p(positive): a saved student, a sequence classifier, or a causal LM.

Bias studies compare a teacher with its students on the same sentences, so
one entry point takes whatever the user has: a folder written by
:func:`~demoscope.distill.save_student`, a Hugging Face sequence classifier
(``*ForSequenceClassification``), or a causal LM asked with a fixed 3-shot
prompt and read as p(" Positive") against p(" Negative") (``reference`` D.1's
EEC teacher scoring, label words with a leading space).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from demoscope.errors import ModelError

# The EEC teacher's fixed 3-shot examples (short, neutral of names; the seed's exact texts are not published).
FIXED_EXAMPLES = (
    ("A warm, funny film with a wonderful cast.", 1),
    ("Dull, far too long, and the ending makes no sense.", 0),
    ("I would happily watch it again tomorrow.", 1),
)

Scorer = Callable[[Sequence[str]], np.ndarray]


def load_system(path: str, positive: int = 1, batch_size: int = 64) -> Scorer:
    """A function texts -> p(positive) for the system at ``path`` (a folder or a model id / ``tiny:`` name)."""
    from demoscope.models.names import resolve_model

    resolved = resolve_model(path)
    folder = Path(resolved)
    if (folder / "student.json").is_file():
        from demoscope.distill import load_student, positive_probability

        student = load_student(folder)
        # One fixed batch width: a BoW student's mean includes its pads.
        return lambda texts: positive_probability(student, list(texts), batch_size=batch_size)
    names = architectures(resolved)
    if any(a.endswith("ForSequenceClassification") for a in names):
        return _classifier(resolved, positive, batch_size)
    if is_causal_lm(resolved):
        return _few_shot(resolved, batch_size)
    raise ModelError(f"{path}: not a saved student, a sequence classifier or a causal LM (architectures {names})")


def is_causal_lm(name: str) -> bool:
    """Whether the model folder or id is a causal LM (asked with a few-shot prompt, not read as a classifier)."""
    if (Path(name) / "student.json").is_file():
        return False
    return any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in architectures(name))


def architectures(name: str) -> list[str]:
    """The ``architectures`` of a model folder's or id's config (offline: local folders and cached ids)."""
    local = Path(name) / "config.json"
    if local.is_file():
        return json.loads(local.read_text()).get("architectures") or []
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name).architectures or []
    except OSError as error:
        raise ModelError(f"{name}: no such folder, and not a model id available offline ({error})") from None


def _classifier(name: str, positive: int, batch_size: int) -> Scorer:
    from demoscope.decoding import load_reward_model

    model, tokenizer = load_reward_model(name)

    def score(texts: Sequence[str]) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for lo in range(0, len(texts), batch_size):
                batch = tokenizer(list(texts[lo:lo + batch_size]), return_tensors="pt", padding=True, truncation=True)
                logits = model(**{k: v.to(model.device) for k, v in batch.items()}).logits.float()
                out.append(torch.softmax(logits, -1)[:, positive].cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    return score


def _few_shot(name: str, batch_size: int) -> Scorer:
    from demoscope.distill.teacher import TeacherLabeler, few_shot_prompt

    labeler = TeacherLabeler.load(name, leading_space=True, batch_size=batch_size)
    return lambda texts: labeler.probabilities([few_shot_prompt(t, FIXED_EXAMPLES) for t in texts])[:, 1]
