"""Survey specs: how to find weights, questions, refusals and groups in a file.

A :class:`SurveySpec` describes one survey family. Pew ATP and GSS ship as
built-in specs (``data/specs/atp.yaml``, ``gss.yaml``) and are detected from a
file's columns, so they need no flags; any other survey is described by a
small YAML of the same shape (see ``README.md``, "Other surveys").
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from demoscope.errors import SpecError


class GroupMatch(BaseModel):
    """Which answer codes of one column put a respondent in a group.

    Exactly one of: ``codes`` (exact codes), ``labels`` (value labels, matched
    case-insensitively), ``prefix`` (the first value label, in code order, that
    starts with it, case-insensitively, as SubPOP matches ATP labels).
    """

    model_config = ConfigDict(extra="forbid")
    codes: list[float] | None = None
    labels: list[str] | None = None
    prefix: str | None = None

    @model_validator(mode="after")
    def _one_rule(self) -> "GroupMatch":
        given = [x for x in (self.codes, self.labels, self.prefix) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of codes, labels or prefix")
        return self


class GroupRule(BaseModel):
    """A group's definition: a match, where to look, and per-column exceptions."""

    model_config = ConfigDict(extra="forbid")
    codes: list[float] | None = None
    labels: list[str] | None = None
    prefix: str | None = None
    columns: list[str] | None = None  # overrides the attribute's candidate columns
    combine: Literal["first", "any"] = "first"  # first present column, or union over all present
    per_column: dict[str, GroupMatch] = Field(default_factory=dict)

    def match_for(self, column: str) -> GroupMatch:
        """The match that applies in ``column`` (a per-column exception, else the default)."""
        for name, match in self.per_column.items():
            if name.lower() == column.lower():
                return match
        return GroupMatch(codes=self.codes, labels=self.labels, prefix=self.prefix)


class AttributeRule(BaseModel):
    """Candidate columns of one attribute (the first present is used) and its groups."""

    model_config = ConfigDict(extra="forbid")
    columns: list[str] = Field(default_factory=list)
    groups: dict[str, GroupRule]


class QuestionRule(BaseModel):
    """Which columns are questions."""

    model_config = ConfigDict(extra="forbid")
    pattern: str | None = None  # regex on the column name; ``{wave}`` is replaced by the wave number
    columns: list[str] | None = None  # an explicit list
    from_codebook: bool = False  # only columns that the codebook lists
    exclude_prefixes: list[str] = Field(default_factory=list)  # case-insensitive


class SurveySpec(BaseModel):
    """Everything needed to turn one survey family's files into distributions."""

    model_config = ConfigDict(extra="forbid")
    name: str
    detect: str | None = None  # regex: the spec applies to a file with a column matching it
    weight: str  # regex, case-insensitive, searched in column order; ``{wave}`` replaced
    wave: str | None = None  # regex with one group that finds the wave number in question names
    id_column: str | None = None
    questions: QuestionRule
    refusal: Literal["last_label", "missing"] = "last_label"
    option_codes: Literal["labels", "offset"] = "labels"
    codebook: str | None = None  # a built-in codebook name (opinionqa, gss2022) or a path
    value_labels: dict[str, dict[float, str]] = Field(default_factory=dict)  # for CSV / Parquet
    attributes: dict[str, AttributeRule]

    def weight_regex(self, wave: int | None) -> re.Pattern[str]:
        return re.compile(self.weight.replace("{wave}", str(wave) if wave is not None else ""), re.IGNORECASE)

    def question_regex(self, wave: int | None) -> re.Pattern[str] | None:
        if self.questions.pattern is None:
            return None
        return re.compile(self.questions.pattern.replace("{wave}", str(wave) if wave is not None else r"\d+"))


BUILTIN_SPECS = ("atp", "gss")


class _SpecLoader(yaml.SafeLoader):
    """YAML 1.1 reads Yes/No/On/Off as booleans; answer labels are text, so only true/false are."""


_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                  list("tTfF"))


def load_spec(source: str | Path) -> SurveySpec:
    """Load a built-in spec by name (``atp``, ``gss``) or a spec YAML by path."""
    if str(source) in BUILTIN_SPECS:
        text = (resources.files("demoscope.surveys") / "data" / "specs" / f"{source}.yaml").read_text()
        where = f"built-in spec {source!r}"
    else:
        try:
            text = Path(source).read_text()
        except OSError as exc:
            raise SpecError(f"cannot read survey spec {source}: {exc.strerror or exc}") from None
        where = f"survey spec {source}"
    try:
        data = yaml.load(text, Loader=_SpecLoader)
        return SurveySpec.model_validate(data)
    except yaml.YAMLError as exc:
        raise SpecError(f"{where} is not valid YAML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SpecError(f"{where} is invalid: {problems}") from None


def detect_spec(columns: list[str], specs: list[SurveySpec]) -> SurveySpec | None:
    """The first spec whose ``detect`` regex matches one of ``columns``, if any."""
    for spec in specs:
        if spec.detect and any(re.search(spec.detect, c, re.IGNORECASE) for c in columns):
            return spec
    return None
