"""What ``bench/gpu_check.py`` feeds the model: SubPOP-shaped token ids, a stand-in tokenizer, LoRA and batches.

The lent GPU machine has no tokenizer files and no pydantic (which
``demoscope.surveys`` and ``demoscope.training.lora`` need), so the prompts
are token ids with the real prompts' sizes and sharing, and the LoRA and
batch builders restate the library's defaults with PEFT and torch alone.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

# Token ids of the stand-in vocabulary: pad, BOS, EOS, the answer letters without and with a space, then text.
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
LETTER_IDS = list(range(4, 30))
SPACE_LETTER_IDS = list(range(30, 56))
FIRST_TEXT_ID = 60

# The shape of bench/scoring.py's 440 QA-steered SubPOP prompts, measured with the repo's tiny tokenizer
# (78,198 tokens; their prefix trie has 31,793 nodes). Group g's steering prefix has GROUP_PREFIX[g] tokens
# (BOS included), the first GROUP_SHARED[g] of them equal to group g-1's (same attribute, or "<s>Question:").
GROUP_PREFIX = [80, 78, 134, 124, 63, 64, 88, 90, 87, 121, 121, 79, 76, 74, 75, 74, 73, 140, 138, 138, 139, 139]
GROUP_SHARED = [0, 49, 6, 93, 9, 34, 5, 58, 58, 5, 87, 5, 48, 5, 46, 46, 46, 6, 109, 109, 109, 109]
# The 20 questions after the prefix, in sorted-token order: length, tokens shared with the previous one, options.
QUESTION_TOKENS = [82, 83, 84, 76, 81, 74, 80, 92, 71, 72, 84, 85, 83, 84, 71, 70, 69, 54, 88, 76]
QUESTION_SHARED = [0, 12, 17, 11, 3, 2, 2, 9, 9, 7, 9, 1, 3, 0, 28, 28, 0, 0, 3, 22]
QUESTION_OPTIONS = [4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 2, 2, 2, 4, 2, 3, 3]


class IdTokenizer:
    """Stand-in tokenizer for a machine without one: a prompt's text is its token ids, space-separated.

    It answers exactly what the option scorer asks: ``tok(prompts)["input_ids"]``,
    and ``encode``/``decode`` of ``"Answer:X"`` / ``"Answer: X"`` for the letter ids.
    """

    name_or_path = "token-ids"
    pad_token_id, eos_token_id = PAD_ID, EOS_ID

    def __call__(self, texts: Sequence[str]) -> dict[str, list[list[int]]]:
        """Token ids of each prompt."""
        return {"input_ids": [[int(t) for t in text.split()] for text in texts]}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Ids of an answer line ``"Answer:X"`` (letter without a space) or ``"Answer: X"`` (with one)."""
        head, _, letter = text.rpartition(":")
        if head != "Answer" or len(letter.strip()) != 1:
            raise ValueError(f"the stand-in tokenizer only encodes answer lines, got {text!r}")
        k = ord(letter.strip()) - 65
        return [EOS_ID, (SPACE_LETTER_IDS if letter.startswith(" ") else LETTER_IDS)[k]]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of letter ids (``"A"`` or ``" A"``); other ids decode to ``"?"``."""
        return "".join(chr(65 + LETTER_IDS.index(i)) if i in LETTER_IDS
                       else " " + chr(65 + SPACE_LETTER_IDS.index(i)) if i in SPACE_LETTER_IDS else "?" for i in ids)


def subpop_shaped_ids(groups: int, questions: int, vocab: int, seed: int = 0) -> tuple[list[list[int]], list[int]]:
    """``groups x questions`` token-id prompts with the real prompts' sharing, and their option counts."""
    if not (1 <= groups <= len(GROUP_PREFIX) and 1 <= questions <= len(QUESTION_TOKENS)):
        raise ValueError(f"groups must be 1..{len(GROUP_PREFIX)} and questions 1..{len(QUESTION_TOKENS)}")
    rng = np.random.default_rng(seed)

    def chain(lengths: Sequence[int], shared: Sequence[int], start: list[int]) -> list[list[int]]:
        # Each piece repeats the previous one's first `shared` tokens, then fresh random text.
        pieces: list[list[int]] = []
        for length, common in zip(lengths, shared):
            head = pieces[-1][:common] if pieces and common else list(start)
            pieces.append(head + rng.integers(FIRST_TEXT_ID, vocab, length - len(head)).tolist())
        return pieces

    prefixes = chain(GROUP_PREFIX[:groups], GROUP_SHARED[:groups], [BOS_ID])
    suffixes = chain(QUESTION_TOKENS[:questions], QUESTION_SHARED[:questions], [])
    ids = [p + s for p in prefixes for s in suffixes]
    return ids, [n for _ in prefixes for n in QUESTION_OPTIONS[:questions]]


def trie_positions(ids: Sequence[Sequence[int]]) -> int:
    """Distinct token prefixes of ``ids``: the fewest positions any exact method that shares KV must run.

    The library's radix tree with no saving threshold holds exactly these
    (``tests/models/test_prefix_sharing.py`` checks it against the definition).
    """
    from demoscope.models.prefix_sharing import prefix_tree

    return sum(len(segment.tokens) for segment in prefix_tree(ids, min_saving=0))


def add_lora(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """SubPOP's LoRA (r=8, alpha=32, dropout 0.05, q/v) through PEFT, B matrices made non-zero as after training.

    ``demoscope.training.lora`` holds these defaults but needs pydantic, which the GPU machine lacks.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=8, lora_alpha=32, lora_dropout=0.05, target_modules=["q_proj", "v_proj"],
                        task_type="CAUSAL_LM", bias="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(model, config)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, param in model.named_parameters():
            if "lora_B" in name:  # a fresh adapter has B = 0, so its gradients would be degenerate
                param.copy_(torch.randn(param.shape) * 0.02)
    return model.eval()


def gradient_batches(vocab: int, samples: int, seq_len: int, batch_size: int,
                     seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Random right-padded rows of ``seq_len/2..seq_len`` tokens; each row's first quarter is an unscored prompt."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(FIRST_TEXT_ID, vocab, (samples, seq_len), generator=g)
    lengths = torch.randint(seq_len // 2, seq_len + 1, (samples,), generator=g).tolist()
    prompt = seq_len // 4
    batches = []
    for start in range(0, samples, batch_size):
        rows = range(start, min(start + batch_size, samples))
        width = max(lengths[i] for i in rows)
        input_ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
        mask, labels = torch.zeros_like(input_ids), torch.full_like(input_ids, -100)
        for j, i in enumerate(rows):
            n = lengths[i]
            input_ids[j, :n], mask[j, :n], labels[j, prompt:n] = ids[i, :n], 1, ids[i, prompt:n]
        batches.append({"input_ids": input_ids, "attention_mask": mask, "labels": labels})
    return batches


def opinion_batches(ids: list[list[int]], n_options: Sequence[int], batch_size: int, steps: int,
                    seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``steps`` shuffled, left-padded opinion batches (as ``training.opinion_data.collate``, which needs pydantic).

    Targets are random distributions over each question's options and a
    refusal share, padded to ten letters by the library's ``pad_targets``.
    """
    from demoscope.training.objectives import pad_targets

    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(steps):
        rows = rng.choice(len(ids), size=batch_size, replace=len(ids) < batch_size)
        width = max(len(ids[i]) for i in rows)
        input_ids = torch.full((batch_size, width), PAD_ID, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        targets, ordinals = [], []
        for j, i in enumerate(rows):
            input_ids[j, width - len(ids[i]):], mask[j, width - len(ids[i]):] = torch.tensor(ids[i]), 1
            dist = rng.dirichlet(np.ones(n_options[i] + 1))
            target, ordinal = pad_targets(list(dist), list(range(1, n_options[i] + 1)))
            targets.append(target)
            ordinals.append(ordinal)
        batches.append({"input_ids": input_ids, "attention_mask": mask,
                        "position_ids": (mask.cumsum(1) - 1).clamp(min=0),
                        "target": torch.tensor(targets, dtype=torch.float32),
                        "ordinal": torch.tensor(ordinals, dtype=torch.float32)})
    return batches
