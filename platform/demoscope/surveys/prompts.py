"""Survey questions as steered multiple-choice prompts, byte for byte as SubPOP writes them.

A prompt is a *steering prefix* (who the model should answer as) followed by
the survey question as a lettered multiple-choice question (MCQ) with an
answer-forcing line, ending in ``"Answer:"`` with no trailing space, so the
next token is the answer letter (``reference/subpop.md`` §2.3-2.4).

Three steering styles, per attribute, come from SubPOP's
``steering_prompts.json`` (shipped as package data):

- ``QA``: the attribute's own question, answered: ``...Answer: A. Northeast``;
- ``BIO``: a first-person description: ``Description: I currently reside in the Northeast.``;
- ``PORTRAY``: an instruction: ``Answer the following question as if you currently resided in the Northeast.``

``ALL`` is not a fourth template: it stands for one row of each (BIO, QA,
PORTRAY, in that order, as SubPOP's inner loop runs).
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from typing import Literal

from demoscope.errors import SpecError

SteeringKind = Literal["QA", "BIO", "PORTRAY"]

SURVEYOR = "Question:"
RESPONDENT = "Answer:"
QA_FORMAT = "{question}\n\n{respondent}"
QUESTION_FORMAT = "{surveyor} {question_body}\n{option_list}\n{additional_instruction}"
QA_STEER_TAIL = "Answer the following question keeping in mind your previous answers.\n"

# OpinionQA / SubPOP distribution CSVs name a few groups differently from the
# steering prompts (SubPOP's ``code_subgroup``, §1.3); we map them back so the
# prompt and the output ``group`` column hold the steering string.
OPINIONQA_GROUP_NAMES: dict[tuple[str, str], str] = {
    ("CITIZEN", "Yes"): "a US Citizen",
    ("CITIZEN", "No"): "a Non-US Citizen",
    ("MARITAL", "Never been married"): "Unmarried and have never been married",
    ("POLPARTY", "Other"): "Something else",
}


class SteeringType(str, Enum):
    """Which steering prefix(es) a fine-tuning row gets; ``ALL`` means one row each of BIO, QA, PORTRAY."""

    BIO = "BIO"
    QA = "QA"
    PORTRAY = "PORTRAY"
    ALL = "ALL"

    @property
    def kinds(self) -> tuple[SteeringKind, ...]:
        """The templates this type expands to, in SubPOP's row order."""
        return ("BIO", "QA", "PORTRAY") if self is SteeringType.ALL else (self.value,)  # type: ignore[return-value]


@dataclass(frozen=True)
class SteeringEntry:
    """One attribute's steering templates and its answer options (the valid group strings)."""

    attribute: str
    qa_prompt: str
    bio_prompt: str
    portray_prompt: str
    options: tuple[str, ...]


def load_steering_prompts() -> dict[str, SteeringEntry]:
    """Read the shipped ``steering_prompts.json`` into ``{attribute: SteeringEntry}``.

    The file's ``options`` field is a Python-literal list *in a string*, as
    SubPOP stores it; it is parsed with ``ast.literal_eval``.
    """
    path = resources.files("demoscope.surveys") / "data" / "subpop" / "steering_prompts.json"
    entries = json.loads(path.read_text())
    return {
        e["attribute"]: SteeringEntry(
            attribute=e["attribute"], qa_prompt=e["qa_prompt"], bio_prompt=e["bio_prompt"],
            portray_prompt=e["portray_prompt"], options=tuple(ast.literal_eval(e["options"])),
        )
        for e in entries
    }


def generate_mcq(question: str, options: list[str], add_answer_forcing: bool = False) -> str:
    """Format ``question`` and ``options`` as SubPOP's lettered MCQ (``survey_utils.generate_mcq``).

    Options become ``A. ...``, ``B. ...`` lines; with ``add_answer_forcing`` a
    line ``Answer as a choice between A.,B.,...`` follows. The result ends in
    ``"\\n\\nAnswer:"`` with no trailing space.
    """
    letters = [chr(65 + i) for i in range(len(options))]
    option_list = "\n".join(f"{letter}. {str(option).strip()}" for letter, option in zip(letters, options))
    instruction = ("Answer as a choice between " + ",".join(f"{letter}." for letter in letters) if add_answer_forcing
                   else "")
    body = QUESTION_FORMAT.format(
        surveyor=SURVEYOR, question_body=question, option_list=option_list, additional_instruction=instruction
    ).strip()  # without forcing, this drops the trailing newline
    return QA_FORMAT.format(question=body, respondent=RESPONDENT)


def steering_group(attribute: str, group: str) -> str:
    """The steering-prompt string for a group, mapping OpinionQA names (``Yes``/``No``, ...) back."""
    return OPINIONQA_GROUP_NAMES.get((attribute, group), group)


# GlobalOpinionQA's groups are countries (demoscope.surveys.benchmarks.COUNTRY), which SubPOP's table lacks:
# one entry per country, in SubPOP's three styles (the paper's cross-national prompting is the PORTRAY one).
COUNTRY_ATTRIBUTE = "COUNTRY"


def _country_entry(country: str) -> SteeringEntry:
    return SteeringEntry(attribute=COUNTRY_ATTRIBUTE, qa_prompt="In which country do you live?",
                         bio_prompt="I live in", portray_prompt="Answer the following question as if you lived in",
                         options=(country,))


def _entry(attribute: str, group: str, prompts: dict[str, SteeringEntry]) -> SteeringEntry:
    if attribute == COUNTRY_ATTRIBUTE and attribute not in prompts:
        return _country_entry(group)
    entry = prompts.get(attribute)
    if entry is None:
        raise SpecError(f"no steering prompt for attribute {attribute!r}; known attributes: {', '.join(prompts)}")
    if group not in entry.options:
        raise SpecError(
            f"group {group!r} is not a steering option of attribute {attribute!r}; "
            f"valid groups: {', '.join(repr(o) for o in entry.options)}"
        )
    return entry


def steering_prefix(
    kind: SteeringKind, attribute: str, group: str, prompts: dict[str, SteeringEntry] | None = None
) -> str:
    """The text put before the survey MCQ to steer the model to answer as ``group``.

    ``group`` must be one of the attribute's steering options (see
    :func:`steering_group` for OpinionQA names); anything else raises
    :class:`SpecError` listing the valid ones. ``prompts`` defaults to the
    shipped table (pass it when rendering many rows).
    """
    entry = _entry(attribute, group, prompts if prompts is not None else load_steering_prompts())
    if kind == "QA":
        steer = generate_mcq(entry.qa_prompt, list(entry.options))
        return steer + f" {chr(65 + entry.options.index(group))}. {group}\n\n" + QA_STEER_TAIL
    if kind in ("BIO", "PORTRAY"):
        template = entry.bio_prompt if kind == "BIO" else entry.portray_prompt
        # SubPOP breaks sentences onto lines; only BIO prompts contain ". "
        return ".\n".join(template.split(". ")) + f" {group}.\n\n"
    raise SpecError(f"unknown steering kind {kind!r}; expected QA, BIO or PORTRAY")


def render_prompt(
    kind: SteeringKind, attribute: str, group: str, question: str, options: list[str],
    prompts: dict[str, SteeringEntry] | None = None,
) -> str:
    """One full fine-tuning prompt: steering prefix + the survey MCQ with answer forcing."""
    return steering_prefix(kind, attribute, group, prompts) + generate_mcq(question, options, add_answer_forcing=True)


def unsteered_prompt(prompt: str) -> str:
    """The survey MCQ of a rendered prompt without its steering prefix (what the model answers as itself).

    The MCQ is the prompt's last line-initial ``"Question:"`` block (a QA
    prefix contains an earlier one, the attribute's own question); a prompt
    with no prefix comes back unchanged.
    """
    start = prompt.rfind("\n" + SURVEYOR)
    return prompt[start + 1:] if start >= 0 else prompt
