"""Fine-tuning rows -> token tensors for the opinion objectives (SubPOP §3.1-3.3).

A row of a prepared set (``demoscope prepare``) holds ``input_prompt`` (ending
in ``Answer:``), ``output_dist`` (responses + refusal, not renormalised) and
``ordinal``. The model is trained on its next-token distribution after the
prompt, restricted to the ten letter tokens " A".." J".

Batches are LEFT-padded (SubPOP right-pads and indexes the target position in
the unpadded sequence; with explicit position ids the logits at the last real
token are the same either way). Left padding puts every row's target at the
last position, so the model computes logits for one position per row
(``logits_to_keep=1``) instead of the whole sequence times the vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from demoscope.models.scoring import encode_prompts
from demoscope.surveys.finetuning import read_split
from demoscope.training.objectives import NUM_LABELS, pad_targets


def read_prepared(path: str | Path) -> pd.DataFrame:
    """Read a prepared split (Parquet, or CSV with list literals) with real lists, checked row by row.

    One reader for every job (:func:`demoscope.surveys.finetuning.read_split`),
    so a file `train` accepts is one `evaluate` accepts, and a bad one fails
    with the file, row and column named.
    """
    return read_split(path)


def label_token_ids(tokenizer) -> torch.Tensor:
    """Ids of " A".." J" (the space variant, last token), the ten training labels (SubPOP §3.3)."""
    return torch.tensor([tokenizer.encode(" " + chr(65 + i), add_special_tokens=False)[-1] for i in range(NUM_LABELS)])


@dataclass
class OpinionExample:
    input_ids: list[int]
    target: list[float]
    ordinal: list[float]


class OpinionDataset(torch.utils.data.Dataset):
    """Tokenised opinion rows; prompts longer than ``max_length`` keep their last tokens."""

    def __init__(self, frame: pd.DataFrame, tokenizer, max_length: int = 1024):
        self.examples = []
        # The scorer's encoding (bos + prompt), so training and evaluation see the same tokens.
        encoded = encode_prompts(tokenizer, list(frame["input_prompt"]))
        for ids, dist, ordinal in zip(encoded, frame["output_dist"], frame["ordinal"]):
            target, padded_ordinal = pad_targets(list(dist), list(ordinal))
            # Over-long prompts keep their end: the question and "Answer:".
            self.examples.append(OpinionExample(list(ids)[-max_length:], target, padded_ordinal))

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> OpinionExample:
        return self.examples[index]


def collate(examples: list[OpinionExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad a batch: input ids, attention mask, position ids, targets and ordinals."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, width - n:] = torch.tensor(example.input_ids)
        mask[row, width - n:] = 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": positions,
        "target": torch.tensor([e.target for e in examples], dtype=torch.float32),
        "ordinal": torch.tensor([e.ordinal for e in examples], dtype=torch.float32),
    }
