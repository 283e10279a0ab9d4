"""The one offline tiny-model factory: a real tokenizer and a random causal LM, built locally in seconds.

Tests, the demo and the benchmarks need a model that loads through exactly
the same ``from_pretrained`` path as a real one, without downloading
anything. :func:`build_tiny_model` trains a byte-level BPE tokenizer on the
shipped survey texts (so SubPOP prompts tokenise into sensible pieces and
every answer letter has its ``"A"`` and ``" A"`` tokens, §4.1 of
``reference/subpop.md``), builds a seeded random ``LlamaForCausalLM`` (or
``GPT2LMHeadModel``) and saves both as safetensors. :func:`tiny_model` builds
once per (arch, seed) into ``$DEMOSCOPE_CACHE`` and reuses it.
"""

from __future__ import annotations

import json
import string
from importlib import resources
from pathlib import Path
from typing import Literal

import torch

from demoscope.errors import ModelError
from demoscope.models.cache import build_once, cache_root

Arch = Literal["llama", "gpt2", "classifier"]

# Bump when the corpus, tokenizer recipe or model config changes, so caches rebuild.
CACHE_VERSION = "v1"
BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
MAX_POSITIONS = 2048
# Repeats of the answer-letter lines in the corpus: enough that BPE learns
# every " A".." Z" merge first, whatever else the corpus holds.
_LETTER_REPEATS = 20


def _corpus() -> list[str]:
    """Training lines: shipped question texts and options, steering prompts, answer-letter lines."""
    from demoscope.surveys.metadata import load_codebook

    lines: list[str] = []
    for name in ("opinionqa", "gss2022"):
        for entry in load_codebook(name).values():
            lines.append(entry.question)
            lines.extend(entry.options or ())
    steering = resources.files("demoscope.surveys") / "data" / "subpop" / "steering_prompts.json"
    for entry in json.loads(steering.read_text()):
        lines.extend(entry[k] for k in ("bio_prompt", "qa_prompt", "portray_prompt", "options"))
    for letter in string.ascii_uppercase:
        lines += [f"Answer: {letter}", f"Answer:{letter}", f"{letter}. Option",
                  f"Answer: {letter}. Option"] * _LETTER_REPEATS
    lines.append("Question: Answer as a choice between " + ",".join(f"{c}." for c in "ABCDEFGHIJ"))
    return lines


def build_tokenizer(vocab_size: int = 2048):
    """Train a byte-level BPE tokenizer on the shipped survey texts; returns a ``PreTrainedTokenizerFast``.

    Byte-level pre-tokenisation (GPT-2's regex) splits punctuation from
    letters, so ``":A"`` never merges and ``"Answer:A"`` ends in the bare
    ``"A"`` token while ``"Answer: A"`` ends in ``"ĠA"``. The post-processor
    prepends ``<s>``, as Llama tokenizers do, so ``tok(prompt)`` (what vLLM
    calls) equals ``tok.encode(tok.bos_token + prompt, add_special_tokens=False)``
    (what our scorer and SubPOP's training call).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[BOS, EOS, PAD, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        model_max_length=MAX_POSITIONS,
    )
    _check_letters(wrapped)
    return wrapped


def _check_letters(tok) -> None:
    """Fail at build time, not in a test far away, if a letter lost its single-token forms."""
    from demoscope.models.scoring import letter_token_ids

    for letter in string.ascii_uppercase:
        if len(tok.encode(" " + letter, add_special_tokens=False)) != 1:
            raise ModelError(f"tiny tokenizer: ' {letter}' is not one token; raise vocab_size")
    no_space, space = letter_token_ids(tok)
    if set(no_space) & set(space):
        raise ModelError("tiny tokenizer: a letter's no-space and space tokens coincide")


def build_tiny_model(
    out_dir: str | Path,
    arch: Arch = "llama",
    seed: int = 0,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 2,
    vocab_size: int = 2048,
) -> Path:
    """Write a tokenizer and a seeded random causal LM to ``out_dir`` (safetensors); returns ``out_dir``.

    ``arch="llama"`` gives a ``LlamaForCausalLM`` (head_dim = hidden/heads,
    64 by default, which vLLM accepts; MLP width 2 x hidden; untied head;
    ``q_proj``/``v_proj`` for LoRA); ``arch="gpt2"`` a ``GPT2LMHeadModel``
    (tied embeddings, as GPT-2 has); ``arch="classifier"`` a 2-label
    ``LlamaForSequenceClassification`` (NEGATIVE/POSITIVE) for gold rewards
    and distillation tests. The same arguments give identical weights. Loading goes through ``from_pretrained``
    like any model.
    """
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    tok = build_tokenizer(vocab_size)
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    if arch == "llama":
        config = LlamaConfig(
            vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
            max_position_embeddings=MAX_POSITIONS, tie_word_embeddings=False, **ids,
        )
        model_cls = LlamaForCausalLM
    elif arch == "classifier":  # a 2-label sentiment-style classifier (gold rewards, distillation students)
        from transformers import LlamaForSequenceClassification

        config = LlamaConfig(
            vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
            max_position_embeddings=MAX_POSITIONS, num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"},
            label2id={"NEGATIVE": 0, "POSITIVE": 1}, **ids,
        )
        model_cls = LlamaForSequenceClassification
    elif arch == "gpt2":
        config = GPT2Config(
            vocab_size=len(tok), n_embd=hidden_size, n_layer=num_layers, n_head=num_heads,
            n_positions=MAX_POSITIONS, **ids,
        )
        model_cls = GPT2LMHeadModel
    else:
        raise ModelError(f"unknown tiny-model arch {arch!r}; expected 'llama', 'gpt2' or 'classifier'")
    # fork_rng: seeding must not disturb the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)  # transformers 5 always writes model.safetensors
    tok.save_pretrained(out)
    return out


def tiny_model(arch: Arch = "llama", seed: int = 0) -> Path:
    """Path of the cached tiny model for (arch, seed), building it on first use.

    The cache lives at ``$DEMOSCOPE_CACHE/tiny-models/{arch}-s{seed}-v1``;
    :func:`~demoscope.models.cache.build_once` makes the build atomic.
    """
    target = cache_root() / "tiny-models" / f"{arch}-s{seed}-{CACHE_VERSION}"
    return build_once(target, lambda folder: build_tiny_model(folder, arch=arch, seed=seed))
