"""The BoW/CNN students' word vocabulary: regex words, most frequent first, id 0 = UNK = pad (``reference`` D.2)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from demoscope.errors import ConfigError

WORD_RE = re.compile(r"[a-z']+")
UNK = "<unk>"  # never a regex word (no '<'), so it cannot collide with a real one
UNK_ID = 0


def tokenize(text: str) -> list[str]:
    """Lower-case ``text`` and return its ``[a-z']+`` words (the seed's tokenizer)."""
    return WORD_RE.findall(text.lower())


@dataclass
class WordVocabulary:
    """``words[i]`` is the word with id ``i``; ``words[0]`` is UNK, which doubles as the pad id."""

    words: list[str]
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.words or self.words[0] != UNK:
            raise ConfigError(f"a word vocabulary starts with {UNK!r} (id 0)")
        if len(set(self.words)) != len(self.words):
            raise ConfigError("a word vocabulary must not repeat words")
        self._index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, texts: Iterable[str], size: int = 10000) -> WordVocabulary:
        """UNK plus the ``size - 1`` most frequent words of ``texts`` (``size`` ids in all, as the seed's 10,000).

        Ties in frequency keep the order in which words first occur in
        ``texts`` (``Counter.most_common`` is a stable sort, and the seed
        builds its vocabulary with it), so the same texts give the same ids.
        """
        if size < 1:
            raise ConfigError(f"vocabulary size must be >= 1, got {size}")
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(tokenize(text))
        return cls([UNK] + [w for w, _ in counts.most_common(size - 1)])

    def __len__(self) -> int:
        return len(self.words)

    def ids(self, text: str) -> list[int]:
        """Word ids of ``text`` (unknown words are 0), untruncated."""
        return [self._index.get(w, UNK_ID) for w in tokenize(text)]

    def encode(self, texts: Sequence[str], max_len: int = 300) -> torch.Tensor:
        """``[len(texts), width]`` LongTensor: ids truncated to ``max_len``, right-padded with 0.

        ``width`` is the longest truncated text in this call (at least 1), as
        the seed pads per batch; note that the BoW mean includes these pads,
        so a text's score depends on the width of the batch it is scored in.
        """
        if max_len < 1:
            raise ConfigError(f"max_len must be >= 1, got {max_len}")
        rows = [self.ids(t)[:max_len] for t in texts]
        width = max([len(r) for r in rows] + [1])
        out = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        return out

    def save(self, path: str | Path) -> Path:
        """Write the vocabulary as JSON ``{"words": [...]}``; returns the path."""
        path = Path(path)
        path.write_text(json.dumps({"words": self.words}))
        return path

    @classmethod
    def load(cls, path: str | Path) -> WordVocabulary:
        """Read a vocabulary written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"vocabulary file {path} does not exist")
        try:
            words = json.loads(path.read_text())["words"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"vocabulary file {path} is not a saved WordVocabulary: {exc}") from None
        return cls(list(words))
