"""Bias transfer for opinion models: fit a student to a teacher's answer distributions instead of the survey's.

A prepared opinion split (``qkey, input_prompt, output_dist, ...``) trains a
model towards ``output_dist``. Replacing that column with a teacher model's
option distributions on the same prompts turns the existing opinion trainer
into a distillation trainer, so a student's opinions (and their group
alignment) can be compared with the teacher's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from demoscope.errors import ConfigError


def teacher_option_dists(frame: pd.DataFrame, scorer) -> list[np.ndarray]:
    """The teacher's distribution over every option shown in each row's prompt (``len(output_dist)`` letters).

    ``scorer`` is any :class:`~demoscope.models.OptionScorer`; the MCQ shows
    the responses plus the refusal option, one letter each.
    """
    return scorer.score(list(frame["input_prompt"]), [len(d) for d in frame["output_dist"]])


def teacher_option_targets(frame: pd.DataFrame, teacher_dists: Sequence[Sequence[float]]) -> pd.DataFrame:
    """A copy of ``frame`` whose ``output_dist`` is the teacher's answer to each row, in the prepared format.

    ``teacher_dists[i]`` (row order) is the teacher's distribution over the
    row's shown options, the refusal last, or over fewer of them (e.g. only
    the ordinal ones, the refusal then getting none). It is written as
    ``demoscope prepare`` writes a survey's answers: the non-refusal shares
    renormalised to sum to 1, then the refusal share, so the student learns the
    teacher's answers exactly as it would learn a survey's, and the file passes
    the same checks. Raises :class:`ConfigError` on a length mismatch, a row
    with no non-negative mass, or a teacher that only refuses.
    """
    if "output_dist" not in frame.columns:
        raise ConfigError("the opinion split has no output_dist column")
    if len(teacher_dists) != len(frame):
        raise ConfigError(f"got {len(teacher_dists)} teacher distributions for {len(frame)} rows")
    targets = []
    for row, (human, teacher) in enumerate(zip(frame["output_dist"], teacher_dists)):
        p = np.asarray(teacher, dtype=float)
        if p.ndim != 1 or not 1 <= len(p) <= len(human):
            raise ConfigError(
                f"row {row}: teacher distribution has shape {p.shape}; the row has {len(human)} options"
            )
        if (p < 0).any() or not np.isfinite(p).all() or p.sum() <= 0:
            raise ConfigError(f"row {row}: teacher distribution {p.tolist()} is not a distribution")
        p = p / p.sum()
        responses, refusal = (p[:-1], float(p[-1])) if len(p) == len(human) else (p, 0.0)
        if responses.sum() <= 0:
            raise ConfigError(f"row {row}: the teacher puts all its mass on the refusal option; no answer to learn")
        responses = np.pad(responses / responses.sum(), (0, len(human) - 1 - len(responses)))
        targets.append(responses.tolist() + [refusal])
    out = frame.copy()
    out["output_dist"] = targets
    return out
