"""Prompts for single survey items (the serving path), in SubPOP's format."""

from __future__ import annotations

from demoscope.surveys.prompts import generate_mcq, render_prompt

REFUSED = "Refused"


def item_prompt(question: str, options: list[str], attribute: str | None = None, group: str | None = None,
                steering: str = "QA", steering_text: str | None = None) -> str:
    """A prompt ending in ``Answer:`` for one question, steered to a subpopulation or by free text.

    SubPOP's models saw "Refused" as the last lettered option; it is appended
    when missing, after the options that get scored, so the prompt matches
    training while the answer distribution covers the caller's options only.
    """
    lettered = list(options) if options and options[-1].strip() == REFUSED else [*options, REFUSED]
    if attribute is not None and group is not None:
        return render_prompt(steering, attribute, group, question, lettered)
    mcq = generate_mcq(question, lettered, add_answer_forcing=True)
    return f"{steering_text.strip()}\n\n{mcq}" if steering_text else mcq
