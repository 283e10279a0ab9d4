"""Option scoring: the distribution a causal LM puts on a survey question's answer letters.

One protocol, :class:`OptionScorer`, two backends: :class:`TransformersOptionScorer`
runs anywhere (CPU tests, small GPU jobs) and runs each token prefix that
prompts share once (:mod:`demoscope.models.prefix_sharing`); :class:`~demoscope.models.vllm_scoring.VLLMOptionScorer`
reads vLLM's log-probs at the first generated position, exactly or from the
top k as SubPOP's ``run_inference.py`` does.

The rule (``reference/subpop.md`` §4.1): after a prompt ending in
``"Answer:"``, option k gets p_k = P(tokA_k) + P(tokSA_k), the next-token
probabilities of the letter without and with a leading space; the
distribution is p renormalised over the question's first ``n_options``
letters; the pre-normalisation sum is SubPOP's ``llm_prob_sum``. If the sum
is 0 (possible with vLLM's top-k logprobs) we return the uniform
distribution and count it in ``zero_mass_count``; SubPOP has no guard there.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, ContextManager, Protocol, runtime_checkable

import numpy as np
import torch

from demoscope.errors import ModelError
from demoscope.models.prefix_sharing import PrefixSharingLM

N_LETTERS = 26

# How the two tokens of one answer letter ("A" after "Answer:", " A" after "Answer: ") become its probability:
# SubPOP sums them (§4.1); OpinionQA's scorer takes the larger (tatsu-lab/opinions_qa, helpers.py).
LETTER_RULES = ("sum", "max")


def combine_letter_forms(no_space: Sequence[float], space: Sequence[float], same: Sequence[bool],
                         rule: str = "sum") -> np.ndarray:
    """Per letter, its probability from its two token forms under ``rule`` (``same``: both forms are one token).

    ``sum`` counts a token that is both forms once; ``max`` is unaffected.
    """
    no_space, space, same = (np.asarray(v) for v in (no_space, space, same))
    if rule == "sum":
        return no_space + np.where(same, 0.0, space)
    if rule == "max":
        return np.maximum(no_space, space)
    raise ValueError(f"letter rule must be one of {LETTER_RULES}, got {rule!r}")


def encode_prompts(tokenizer: Any, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each prompt, encoded the way the model's tokenizer does by default.

    That is ``tokenizer(prompt)["input_ids"]`` with the tokenizer's own
    special-token rule: a Llama-2 tokenizer adds ``<s>`` itself, SmolLM2's and
    GPT-2's add nothing. It is what vLLM feeds the model for a text prompt,
    so both backends, training and scoring see the same tokens. Prepending
    ``tokenizer.bos_token`` instead (SubPOP's training does, for Llama-2,
    where it is the same thing) would put SmolLM2-Instruct's chat token
    ``<|im_start|>`` before every prompt and move its answers. Raises
    ``ValueError`` for a prompt with no tokens: there is no position to
    read the next-token distribution from.
    """
    if not prompts:
        return []
    encoded = tokenizer(list(prompts))["input_ids"]
    empty = [i for i, ids in enumerate(encoded) if not ids]
    if empty:
        raise ValueError(f"prompt {empty[0]} encodes to no tokens (the tokenizer adds no BOS); "
                         f"prompts must not be empty")
    return encoded


def letter_token_ids(tokenizer: Any, n: int = N_LETTERS) -> tuple[list[int], list[int]]:
    """The answer-letter token ids ``(tokA, tokSA)`` for letters A.. (``n`` of them), per §4.1.

    ``tokA[k]`` is the last id of ``"Answer:" + L`` (letter without a leading
    space), ``tokSA[k]`` of ``"Answer: " + L`` (with one), both encoded
    without special tokens. Raises :class:`ModelError` if a last token is not
    the bare letter, i.e. the tokenizer merged ``":A"`` or ``" A."``-like
    pieces and the letter has no token of its own there.
    """
    no_space, space = [], []
    for k in range(n):
        letter = chr(65 + k)
        for text, out in (("Answer:" + letter, no_space), ("Answer: " + letter, space)):
            tid = tokenizer.encode(text, add_special_tokens=False)[-1]
            if tokenizer.decode([tid]).strip() != letter:
                raise ModelError(
                    f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r}: {text!r} ends in token "
                    f"{tokenizer.decode([tid])!r}, not the letter {letter!r}; the letter was merged with "
                    "its neighbour, so answer letters cannot be scored with this tokenizer"
                )
            out.append(tid)
    return no_space, space


def option_distributions(letter_probs: np.ndarray, n_options: Sequence[int]) -> tuple[list[np.ndarray], np.ndarray]:
    """Renormalise per-letter probabilities over each question's scored options.

    ``letter_probs[i, k]`` is p_k = P(tokA_k) + P(tokSA_k) for prompt i.
    Returns (distributions, masses): distribution i has ``n_options[i]``
    entries summing to 1 (uniform where the mass is 0); masses[i] is the
    pre-normalisation sum (SubPOP's ``llm_prob_sum``).
    """
    dists, masses = [], np.zeros(len(n_options))
    for i, n in enumerate(n_options):
        p = letter_probs[i, :n]
        masses[i] = p.sum()
        dists.append(p / masses[i] if masses[i] > 0 else np.full(n, 1.0 / n))
    return dists, masses


def _check_inputs(prompts: Sequence[str], n_options: Sequence[int], n_letters: int) -> None:
    if len(prompts) != len(n_options):
        raise ValueError(f"got {len(prompts)} prompts but {len(n_options)} option counts")
    bad = [n for n in n_options if not 1 <= n <= n_letters]
    if bad:
        raise ValueError(f"option counts must be between 1 and {n_letters}; got {bad[:5]}")


def adapter_context(model: Any, adapter: str | None) -> ContextManager:
    """Select ``adapter`` on a PEFT model for the duration of a ``with`` block.

    ``None`` on a ``PeftModel`` disables all adapters (the base model);
    ``None`` on a plain model does nothing. A name activates that adapter
    (frozen, ``inference_mode=True``) if it is not already the active one and
    raises :class:`ModelError` if the model has no such adapter.
    """
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        if adapter is not None:
            raise ModelError(f"adapter {adapter!r} requested but the model has no adapters loaded")
        return nullcontext()
    if adapter is None:
        return model.disable_adapter()
    if adapter not in model.peft_config:
        raise ModelError(f"unknown adapter {adapter!r}; the model has {sorted(model.peft_config)}")
    if model.active_adapter != adapter:
        model.set_adapter(adapter, inference_mode=True)
    return nullcontext()


@runtime_checkable
class OptionScorer(Protocol):
    """Anything that turns prompts into answer-option distributions (§4.1 rule)."""

    zero_mass_count: int

    def score(self, prompts: Sequence[str], n_options: Sequence[int]) -> list[np.ndarray]:
        """Per prompt, the distribution over its first ``n_options`` letters (sums to 1)."""
        ...

    def score_with_mass(self, prompts: Sequence[str], n_options: Sequence[int]) -> tuple[list[np.ndarray], np.ndarray]:
        """``score`` plus the pre-normalisation letter mass per prompt (SubPOP's ``llm_prob_sum``)."""
        ...


class TransformersOptionScorer:
    """Score prompts with a Hugging Face causal LM (optionally a PEFT model), each shared prefix run once.

    Prompts are tokenised with :func:`encode_prompts` and run through
    :class:`~demoscope.models.prefix_sharing.PrefixSharingLM` (the prompts'
    radix tree, each shared prefix run once, its KV cache reused below it).
    ``adapter=None`` scores the base model (adapters disabled); a name
    scores with that PEFT adapter. ``reuse_prefix=False`` runs each prompt
    whole in padded batches (for benchmarks and debugging). Results come back in input order.
    """

    def __init__(
        self, model: Any, tokenizer: Any, batch_size: int = 16, adapter: str | None = None, reuse_prefix: bool = True,
        letter_rule: str = "sum",
    ):
        self.lm = PrefixSharingLM(model, tokenizer, batch_size, reuse_prefix)
        self.model, self.tokenizer, self.adapter = model, tokenizer, adapter
        combine_letter_forms([0.0], [0.0], [False], letter_rule)  # an unknown rule fails here
        self.letter_rule = letter_rule
        adapter_context(model, adapter)  # fail now on an unknown adapter, not at the first batch
        no_space, space = letter_token_ids(tokenizer)
        self._no_space, self._space = torch.tensor(no_space), torch.tensor(space)
        self.zero_mass_count = 0

    def score(self, prompts: Sequence[str], n_options: Sequence[int]) -> list[np.ndarray]:
        """Per prompt, the distribution over its first ``n_options`` letters (sums to 1)."""
        return self.score_with_mass(prompts, n_options)[0]

    def score_with_mass(self, prompts: Sequence[str], n_options: Sequence[int]) -> tuple[list[np.ndarray], np.ndarray]:
        """``score`` plus each prompt's pre-normalisation letter mass (SubPOP's ``llm_prob_sum``)."""
        _check_inputs(prompts, n_options, N_LETTERS)
        dists, masses = option_distributions(self.letter_probs(prompts), n_options)
        self.zero_mass_count += int((masses == 0).sum())
        return dists, masses

    def letter_probs(self, prompts: Sequence[str]) -> np.ndarray:
        """``[len(prompts), 26]`` array of p_k from P(tokA_k) and P(tokSA_k) at the next-token position.

        ``letter_rule`` ``sum`` (SubPOP) adds the two forms, ``max`` takes the larger.
        """
        ids = encode_prompts(self.tokenizer, prompts)
        out = np.zeros((len(ids), N_LETTERS))
        with adapter_context(self.model, self.adapter):
            for batch, logp in self.lm.batches(ids):
                probs = logp.double().exp().cpu()
                p_a, p_s = probs[:, self._no_space].numpy(), probs[:, self._space].numpy()
                # A tokenizer whose two letter forms coincide would count the same token twice under sum.
                out[batch] = combine_letter_forms(p_a, p_s, (self._no_space == self._space).numpy(), self.letter_rule)
        return out


def scorers_by_adapter(path: str, adapters: dict[str, str] | None, backend: str, batch_size: int = 16,
                       letter_logprobs: str = "auto", top_k: int = 128,
                       letter_rule: str = "sum") -> dict[str | None, OptionScorer]:
    """One model on one engine with its LoRA adapters: ``{None: base model, name: that adapter on, ...}``.

    The one place that picks the option scorer's engine. ``backend`` is
    ``"transformers"`` or ``"vllm"`` (resolve ``"auto"`` first with
    :func:`demoscope.models.names.choose_backend`). vLLM starts one engine
    sized for all the adapters and serves each as a LoRA request on it
    (``letter_logprobs`` and ``top_k`` choose how it reads the letters, see
    :mod:`demoscope.models.vllm_scoring`); Transformers loads one PEFT model
    and switches adapters per call. All scorers share the base weights and
    read a letter's two token forms by ``letter_rule`` (:data:`LETTER_RULES`).
    """
    adapters = dict(adapters or {})
    if backend == "vllm":
        from demoscope.models.vllm_scoring import VLLMOptionScorer

        base = VLLMOptionScorer.create(path, adapters or None, letter_logprobs, top_k, letter_rule=letter_rule)
        return {None: base, **{name: base.with_adapter(name, folder) for name, folder in adapters.items()}}
    from demoscope.models.loading import load_causal_lm

    lm, tokenizer = load_causal_lm(path, adapters=adapters or None)
    return {name: TransformersOptionScorer(lm, tokenizer, batch_size, adapter=name, letter_rule=letter_rule)
            for name in [None, *adapters]}


def option_scorers(path: str, adapter: str | None, backend: str, batch_size: int = 16, compare_base: bool = False,
                   letter_logprobs: str = "auto", top_k: int = 128,
                   letter_rule: str = "sum") -> dict[str, OptionScorer]:
    """Scorers for one model on one engine: ``{"model"}`` without an adapter, else ``{"tuned"}`` (+ ``"base"``).

    :func:`scorers_by_adapter` with at most one adapter, named for the
    evaluation's columns. With ``compare_base`` the base model shares the
    tuned one's weights: the adapter switched off, or no LoRA request.
    """
    scorers = scorers_by_adapter(path, {"adapter": adapter} if adapter else None, backend, batch_size,
                                 letter_logprobs, top_k, letter_rule)
    if adapter is None:
        return {"model": scorers[None]}
    return {"tuned": scorers["adapter"], **({"base": scorers[None]} if compare_base else {})}
