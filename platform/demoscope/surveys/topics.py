"""Topics of survey questions: a coarse, editable taxonomy that groups questions across waves.

Topics come from one of two kinds of file:

* a YAML mapping ``topic: [regex, ...]`` (the shipped ``data/topics/topics.yaml``
  is one): a question gets the first topic, in file order, one of whose
  patterns matches its text (case-insensitive), else ``"other"``;
* a CSV with columns ``qkey,topic``: an explicit assignment; questions it does
  not list get ``"other"``.

Question text is taken from the codebook when there is one, or read back from
a prepared prompt (:func:`question_of_prompt`), so prepared splits need no
extra column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd

from demoscope.errors import ConfigError

OTHER = "other"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # topics become source names, and those folder names


def _check_names(names, source: str) -> None:
    bad = sorted({str(n) for n in names if not _NAME.match(str(n))})
    if bad:
        raise ConfigError(f"topics file {source}: topic name(s) {bad} must be letters, digits, - _ . only "
                          "(each topic becomes a folder name), e.g. 'gender-family'")


@dataclass(frozen=True)
class TopicTable:
    """Question -> topic, by keyword patterns over the text or by an explicit ``qkey -> topic`` map."""

    patterns: dict[str, re.Pattern] = field(default_factory=dict)
    by_qkey: dict[str, str] = field(default_factory=dict)
    source: str = "built-in"

    def topic(self, qkey: str, text: str = "") -> str:
        """The topic of one question (explicit assignment first, then the first matching pattern)."""
        if qkey in self.by_qkey:
            return self.by_qkey[qkey]
        return next((name for name, pattern in self.patterns.items() if pattern.search(text)), OTHER)

    @property
    def topics(self) -> list[str]:
        """Every topic the table can give, ``"other"`` last."""
        names = list(self.patterns) + sorted(set(self.by_qkey.values()) - set(self.patterns))
        return [n for n in names if n != OTHER] + [OTHER]


def load_topics(path: str | Path | None = None) -> TopicTable:
    """The shipped taxonomy, or a user's YAML (``topic: [regex, ...]``) or CSV (``qkey,topic``)."""
    if path is None:
        text = resources.files("demoscope.surveys").joinpath("data/topics/topics.yaml").read_text()
        return _from_yaml(text, "built-in")
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"topics file {path} does not exist")
    if path.suffix.lower() == ".csv":
        frame = pd.read_csv(path, dtype=str)
        missing = {"qkey", "topic"} - set(frame.columns)
        if missing:
            raise ConfigError(f"topics file {path} lacks column(s) {sorted(missing)}; expected columns qkey,topic")
        frame = frame.dropna(subset=["qkey", "topic"])
        _check_names(frame.topic, str(path))
        return TopicTable(by_qkey=dict(zip(frame.qkey, frame.topic)), source=str(path))
    return _from_yaml(path.read_text(), str(path))


def _from_yaml(text: str, source: str) -> TopicTable:
    import yaml

    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not all(isinstance(v, list) and v for v in data.values()):
        raise ConfigError(f"topics file {source} must map each topic to a non-empty list of regular expressions")
    _check_names(data, source)
    patterns = {}
    for name, regexes in data.items():
        try:
            patterns[str(name)] = re.compile("|".join(f"(?:{r})" for r in regexes), re.IGNORECASE)
        except re.error as err:
            raise ConfigError(f"topics file {source}, topic {name!r}: bad regular expression ({err})") from None
    return TopicTable(patterns=patterns, source=source)


def question_of_prompt(prompt: str) -> str:
    """The last question of a prepared prompt: the text after its final ``Question:``, before the options."""
    body = prompt.rsplit("Question:", 1)[-1]
    return re.split(r"\n[A-Z]\. ", body, maxsplit=1)[0].strip()


def topics_of(frame: pd.DataFrame, table: TopicTable | None = None) -> pd.Series:
    """The topic of every row of a prepared split (``qkey``, ``input_prompt``) or a distributions table
    (``question``).
    """
    table = table or load_topics()
    if "question" in frame.columns:
        texts = frame["question"].astype(str)
    elif "input_prompt" in frame.columns:
        texts = frame["input_prompt"].map(question_of_prompt)
    else:
        raise ConfigError("rows need a `question` or an `input_prompt` column to be given topics")
    first = pd.DataFrame({"qkey": frame["qkey"].astype(str), "text": texts}).drop_duplicates("qkey")
    topic = {q: table.topic(q, t) for q, t in zip(first.qkey, first.text)}  # once per question, not per row
    return frame["qkey"].astype(str).map(topic).rename("topic")
