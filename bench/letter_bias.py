"""What SmolLM2-135M-Instruct's option scores mean: letter bias, and the BOS rule's effect.

1. For obvious questions, the probability of the right option with the right
   option moved through every position, in SubPOP's format ("... Answer:")
   and as a chat turn: a model that knows the answer keeps it high
   everywhere; a letter-biased one follows the position.
2. On real OpinionQA prompts (QA-steered, 22 groups), the mean total
   variation between the scored distributions with the tokenizer's own
   encoding (what Demoscope does) and with ``bos_token`` prepended (what it
   did before: SmolLM2's BOS is the chat token ``<|im_start|>``).

    .venv/bin/python bench/letter_bias.py        # ~1 minute on 2 cores
"""

from __future__ import annotations

import numpy as np
import torch

from demoscope.models import TransformersOptionScorer, letter_token_ids, load_causal_lm
from demoscope.models.names import resolve_model
from demoscope.surveys.metadata import load_codebook, load_subpopulations
from demoscope.surveys.prompts import generate_mcq, render_prompt

QUESTIONS = [
    ("What is the capital of France?", ["Paris", "London", "Rome", "Tokyo"]),
    ("Which planet do we live on?", ["Earth", "Mars", "Venus", "Jupiter"]),
    ("What is 1 + 1?", ["2", "7", "9", "5"]),
    ("Which animal barks?", ["Dog", "Fish", "Snake", "Owl"]),
]


def position_table(model, tok) -> None:
    scorer = TransformersOptionScorer(model, tok)
    print("P(right option) with the right option at A, B, C, D")
    for style in ("subpop", "chat"):
        for question, options in QUESTIONS:
            row = []
            for k in range(4):
                moved = options[1:k + 1] + [options[0]] + options[k + 1:]
                prompt = generate_mcq(question, moved)
                if style == "chat":
                    body = prompt.rsplit("Answer:", 1)[0].strip()
                    prompt = tok.apply_chat_template([{"role": "user", "content": body}], tokenize=False,
                                                     add_generation_prompt=True)
                row.append(scorer.score([prompt], [4])[0][k])
            print(f"  {style:6} {question:32} " + "  ".join(f"{p:.2f}" for p in row))


def bos_effect(model, tok, n_questions: int = 20) -> None:
    entries = list(load_codebook("opinionqa").values())[:n_questions]
    groups = [(s.attribute, s.group) for s in load_subpopulations("22")]
    prompts = [render_prompt("QA", a, g, e.question, list(e.options)) for e in entries for a, g in groups[::4]]
    n_options = [len(e.ordinal) for e in entries for _ in groups[::4]]
    ours = TransformersOptionScorer(model, tok, batch_size=16).score(prompts, n_options)
    no_space, space = letter_token_ids(tok)
    tv = []
    with torch.no_grad():
        for prompt, n, dist in zip(prompts, n_options, ours):
            ids = tok(tok.bos_token + prompt, add_special_tokens=False, return_tensors="pt").input_ids
            probs = torch.softmax(model(ids).logits[0, -1].double(), -1)
            p = np.array([float(probs[no_space[k]] + probs[space[k]]) for k in range(n)])
            tv.append(0.5 * np.abs(p / p.sum() - dist).sum())
    print(f"BOS rule: {len(prompts)} QA-steered OpinionQA prompts; mean TV between the tokenizer's own encoding and "
          f"bos_token + prompt: {np.mean(tv):.3f} (max {np.max(tv):.3f})")


def main() -> None:
    torch.manual_seed(0)
    model, tok = load_causal_lm(resolve_model("smollm2:135m"))
    position_table(model, tok)
    bos_effect(model, tok)


if __name__ == "__main__":
    main()
