"""The three student kinds of ``reference`` D.2 behind one interface.

* ``"bow"``: :class:`BagOfWords`, Embedding -> mean over positions (pads
  included, as in the seed) -> Linear(dim, 2); words truncated to 300.
* ``"cnn"``: :class:`KimCNN`, Embedding -> Conv1d per kernel size -> ReLU ->
  global max -> concat -> Dropout -> Linear; words truncated to 400.
* ``"hf"``: any 2-label Hugging Face sequence classifier, used as is
  (DistilBERT in the seed; :func:`build_tiny_classifier` offline).

A :class:`Student` holds a module and an encoder: ``student.encode(texts)``
gives a dict of tensors and ``student.module(**batch)`` returns logits
``[batch, 2]`` for every kind, so one training loop (``training.py``) serves
all three, and a DDP wrapper around ``student.module`` keeps that contract.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from demoscope.distill.tiny_classifier import build_tiny_classifier
from demoscope.distill.vocabulary import UNK_ID, WordVocabulary
from demoscope.errors import ConfigError, ModelError

StudentKind = Literal["bow", "cnn", "hf"]
KINDS = ("bow", "cnn", "hf")
# The seed's truncation lengths: 300 words for BoW, 400 for the CNN.
DEFAULT_MAX_LEN = {"bow": 300, "cnn": 400}
# A tokenizer's model_max_length above this is a "no limit" sentinel, not a real limit.
_NO_LIMIT = 1_000_000
_HF_FALLBACK_MAX_LEN = 512


class BagOfWords(nn.Module):
    """Embedding(vocab, dim) -> mean over all positions, pads included -> Linear(dim, 2)."""

    def __init__(self, vocab_size: int, dim: int = 100):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.linear = nn.Linear(dim, 2)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # The seed averages over the padded width (pad id 0 has a trained embedding), kept as is.
        return self.linear(self.embed(input_ids).mean(dim=1))


class KimCNN(nn.Module):
    """Kim (2014)-style CNN: Conv1d(dim -> filters) per kernel size, ReLU, global max, Dropout, Linear -> 2."""

    def __init__(
        self, vocab_size: int, dim: int = 100, filters: int = 100, kernel_sizes: Sequence[int] = (4, 5, 6),
        dropout: float = 0.5,
    ):
        super().__init__()
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.embed = nn.Embedding(vocab_size, dim)
        self.convs = nn.ModuleList(nn.Conv1d(dim, filters, kernel_size=k) for k in self.kernel_sizes)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(filters * len(self.kernel_sizes), 2)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        short = max(self.kernel_sizes) - input_ids.shape[1]
        if short > 0:
            # The seed's convolutions fail on batches shorter than a kernel; pad them instead.
            input_ids = F.pad(input_ids, (0, short), value=UNK_ID)
        emb = self.embed(input_ids).transpose(1, 2)  # [B, dim, T]
        pooled = [torch.relu(conv(emb)).max(dim=2).values for conv in self.convs]
        return self.fc(self.dropout(torch.cat(pooled, dim=1)))


class HFClassifier(nn.Module):
    """A Hugging Face sequence classifier whose forward returns the logits tensor, like the other students."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        return self.model(**batch).logits


class WordEncoder:
    """Texts -> ``{"input_ids": LongTensor}`` with a :class:`WordVocabulary` (picklable for Ray workers)."""

    def __init__(self, vocab: WordVocabulary, max_len: int):
        self.vocab, self.max_len = vocab, max_len

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return {"input_ids": self.vocab.encode(texts, self.max_len)}


class HFEncoder:
    """Texts -> the tokenizer's padded, truncated tensors, keeping only what the model's forward takes."""

    def __init__(self, tokenizer: Any, max_len: int, accepted: Sequence[str]):
        self.tokenizer, self.max_len, self.accepted = tokenizer, max_len, set(accepted)

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_len, return_tensors="pt")
        return {k: v for k, v in batch.items() if k in self.accepted}


@dataclass
class Student:
    """A student: ``module(**encode(texts))`` gives logits ``[n, 2]``; ``config`` rebuilds it (:func:`save_student`)."""

    kind: str
    module: nn.Module
    encoder: Any
    config: dict[str, Any] = field(default_factory=dict)
    vocab: WordVocabulary | None = None
    tokenizer: Any = None

    def encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Model inputs for ``texts`` (one batch)."""
        return self.encoder(texts)

    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        """Logits ``[len(texts), 2]`` in the module's current mode, on the module's device."""
        device = next(self.module.parameters()).device
        return self.module(**{k: v.to(device) for k, v in self.encode(texts).items()})


def _seeded(seed: int, build):
    # fork_rng: seeding must not disturb the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def make_student(
    kind: StudentKind,
    *,
    vocab: WordVocabulary | None = None,
    texts: Sequence[str] | None = None,
    vocab_size: int = 10000,
    max_len: int | None = None,
    model_path: str | Path | None = None,
    seed: int = 0,
    **model_kwargs: Any,
) -> Student:
    """Build a student of ``kind`` with seeded initial weights.

    ``"bow"``/``"cnn"``: give ``vocab``, or ``texts`` to build one of
    ``vocab_size`` ids; ``model_kwargs`` go to :class:`BagOfWords` (``dim``)
    or :class:`KimCNN` (``dim``, ``filters``, ``kernel_sizes``, ``dropout``);
    ``max_len`` defaults to 300 / 400 words. ``"hf"``: ``model_path`` is a
    2-label sequence-classifier folder or Hub id (weights as saved; ``seed``
    unused); ``max_len`` defaults to the tokenizer's limit (512 if none).
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown student kind {kind!r}; use one of {KINDS}")
    if kind == "hf":
        if model_path is None:
            raise ConfigError("an 'hf' student needs model_path (a sequence-classifier folder or Hub id)")
        return _hf_student(model_path, max_len)
    if vocab is None:
        if texts is None:
            raise ConfigError(f"a {kind!r} student needs a vocabulary or texts to build one")
        vocab = WordVocabulary.build(texts, vocab_size)
    max_len = DEFAULT_MAX_LEN[kind] if max_len is None else int(max_len)
    cls = BagOfWords if kind == "bow" else KimCNN
    try:
        module = _seeded(seed, lambda: cls(len(vocab), **model_kwargs))
    except TypeError as exc:
        raise ConfigError(f"bad options for a {kind!r} student: {exc}") from None
    config = {"kind": kind, "max_len": max_len, "model_kwargs": _jsonable(model_kwargs)}
    return Student(kind, module, WordEncoder(vocab, max_len), config, vocab=vocab)


def _jsonable(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}


def _hf_student(model_path: str | Path, max_len: int | None) -> Student:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(model_path), use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    except OSError as exc:
        raise ModelError(f"cannot load sequence classifier {str(model_path)!r}: {exc}") from None
    if model.config.num_labels != 2:
        raise ModelError(f"student classifier {str(model_path)!r} has {model.config.num_labels} labels; need 2")
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(f"tokenizer of {str(model_path)!r} has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if max_len is None:
        limit = tokenizer.model_max_length
        max_len = int(limit) if limit < _NO_LIMIT else _HF_FALLBACK_MAX_LEN
    # Pass only what forward takes (a BERT tokenizer's token_type_ids would break a Llama classifier).
    accepted = inspect.signature(model.forward).parameters
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in accepted]
    encoder = HFEncoder(tokenizer, max_len, keys)
    config = {"kind": "hf", "max_len": max_len}
    return Student("hf", HFClassifier(model), encoder, config, tokenizer=tokenizer)


def positive_probability(student: Student, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """p(Positive) = softmax(z)[:, 1] for each text, in eval mode (dropout off); float64 array.

    Texts are scored ``batch_size`` at a time, in order. The BoW mean counts
    pads, so its scores depend on the batch width: the seed scored the EEC
    in one batch (``batch_size=len(texts)``) and IMDB test in batches of 32.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    out = np.zeros(len(texts))
    was_training = student.module.training
    student.module.eval()
    try:
        with torch.inference_mode():
            for lo in range(0, len(texts), batch_size):
                logits = student.logits(list(texts[lo:lo + batch_size]))
                out[lo:lo + batch_size] = torch.softmax(logits.double(), dim=-1)[:, 1].cpu().numpy()
    finally:
        student.module.train(was_training)
    return out


def save_student(student: Student, out_dir: str | Path) -> Path:
    """Write ``student.json`` plus weights (``model.safetensors``) and vocabulary or tokenizer to ``out_dir``."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if student.kind == "hf":
        student.module.model.save_pretrained(out)
        student.tokenizer.save_pretrained(out)
    else:
        student.vocab.save(out / "vocab.json")
        state = {k: v.detach().cpu().contiguous() for k, v in student.module.state_dict().items()}
        save_file(state, str(out / "model.safetensors"))
    (out / "student.json").write_text(json.dumps(student.config, indent=2))
    return out


def load_student(path: str | Path) -> Student:
    """Rebuild a student written by :func:`save_student` (in eval mode)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / "student.json").is_file():
        raise ModelError(f"{path} is not a saved student (no student.json)")
    config = json.loads((path / "student.json").read_text())
    if config["kind"] == "hf":
        student = _hf_student(path, config["max_len"])
    else:
        student = make_student(
            config["kind"], vocab=WordVocabulary.load(path / "vocab.json"), max_len=config["max_len"],
            **config.get("model_kwargs", {}),
        )
        student.module.load_state_dict(load_file(str(path / "model.safetensors")))
    student.module.eval()
    return student


__all__ = [
    "BagOfWords", "HFClassifier", "KimCNN", "Student", "WordVocabulary", "build_tiny_classifier", "load_student",
    "make_student", "positive_probability", "save_student",
]
