"""The same survey question with its options in other orders, and the answers mapped back.

Models' answer distributions move when the options are listed in another
order (Röttger et al. 2024, "Political Compass or Spinning Arrow? Towards More
Meaningful Evaluations for Values and Opinions in Large Language Models",
arXiv:2402.16786). A rendered prompt's MCQ (its last ``Question:`` block, see
:func:`~demoscope.surveys.prompts.unsteered_prompt`) lists options as ``A. ...``
lines; :func:`reorder_options` lists the scored ones in another order (the
letters stay A, B, C, ...), and :func:`restore_order` maps a distribution over
the shown letters back to the original options.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from demoscope.errors import SurveyFormatError
from demoscope.surveys.prompts import SURVEYOR

_OPTION = re.compile(r"^([A-Z])\. (.*)$")


def option_orders(n_options: int, k: int) -> list[tuple[int, ...]]:
    """The first ``k`` distinct orders of ``n_options`` options: as given, reversed, then cyclic shifts by 1, 2, ..."""
    identity = tuple(range(n_options))
    candidates = [identity, identity[::-1], *[identity[s:] + identity[:s] for s in range(1, n_options)]]
    orders: list[tuple[int, ...]] = []
    for order in candidates:
        if order not in orders:
            orders.append(order)
    return orders[:k]


def reorder_options(prompt: str, order: Sequence[int]) -> str:
    """``prompt`` with its MCQ's first ``len(order)`` options shown in ``order``: line ``j`` shows option ``order[j]``.

    Options after those (a refusal the question lists last) keep their place.
    Raises :class:`SurveyFormatError` when the MCQ does not list that many
    lettered options.
    """
    start = prompt.rfind(SURVEYOR)
    head, block = (prompt[:start], prompt[start:]) if start >= 0 else ("", prompt)
    lines = block.split("\n")
    first = next((i for i, line in enumerate(lines) if line.startswith("A. ")), None)
    texts = []
    if first is not None:
        for line in lines[first:]:
            match = _OPTION.match(line)
            if not match or match.group(1) != chr(65 + len(texts)):
                break
            texts.append(match.group(2))
    if len(texts) < len(order) or sorted(order) != list(range(len(order))):
        raise SurveyFormatError("prompt", f"cannot show {len(order)} options in order {list(order)}: the MCQ lists "
                                f"{len(texts)} lettered options")
    shown = [texts[i] for i in order] + texts[len(order):]
    for j, text in enumerate(shown):
        lines[first + j] = f"{chr(65 + j)}. {text}"
    return head + "\n".join(lines)


def restore_order(shown: Sequence[float], order: Sequence[int]) -> np.ndarray:
    """A distribution over the shown letters, mapped back: original option ``order[j]`` gets ``shown[j]``."""
    restored = np.empty(len(order))
    restored[list(order)] = np.asarray(shown, dtype=float)[: len(order)]
    return restored


def score_in_orders(scorer, prompts: Sequence[str], n_options: Sequence[int], k: int,
                    as_given: Sequence[np.ndarray] | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Each prompt scored with its options in :func:`option_orders` ``(n, k)``; ``(order-averaged, spread)``.

    ``scorer`` is any option scorer (``score(prompts, n_options)``); each
    order's answers are mapped back to the original options
    (:func:`restore_order`) before averaging. ``spread`` is, per prompt, the
    mean total variation between the as-given answer (``as_given`` when
    already scored) and each other order's: 0 when the order does not matter.
    """
    first = list(as_given) if as_given is not None else scorer.score(list(prompts), list(n_options))
    answers = [[np.asarray(d, dtype=float)] for d in first]
    orders = [option_orders(n, k) for n in n_options]
    for step in range(1, k):
        rows = [i for i, own in enumerate(orders) if step < len(own)]
        if not rows:
            break
        shown = scorer.score([reorder_options(prompts[i], orders[i][step]) for i in rows], [n_options[i] for i in rows])
        for i, dist in zip(rows, shown):
            answers[i].append(restore_order(dist, orders[i][step]))
    averaged = [np.mean(own, axis=0) for own in answers]
    spread = np.array([np.mean([0.5 * np.abs(d - own[0]).sum() for d in own[1:]]) if len(own) > 1 else 0.0
                       for own in answers])
    return averaged, spread
