"""Option scoring: the distribution a causal LM puts on a survey question's answer letters.

One protocol, :class:`OptionScorer`, two backends: :class:`TransformersOptionScorer`
runs anywhere (CPU tests, small GPU jobs) and batches prompts that share a
prefix over one KV cache; :class:`~demoscope.models.vllm_scoring.VLLMOptionScorer`
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

import inspect
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from typing import Any, ContextManager, Protocol, runtime_checkable

import numpy as np
import torch

from demoscope.errors import ModelError

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


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of leading positions where ``a`` and ``b`` agree.

    Here (not in :mod:`demoscope.decoding`) because decoding imports models,
    never the reverse: batch planning and the guidance score both use it.
    """
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


# A forward pass costs on CPU about as much as recomputing this many prompt tokens.
SPLIT_COST_TOKENS = 64


def plan_batches(ids: list[list[int]], batch_size: int) -> list[tuple[list[int], int]]:
    """Group prompt indices into batches that share long token prefixes; returns ``[(indices, shared)]``.

    Prompts are sorted by token ids, so prompts with a common prefix are
    adjacent. A batch's ``shared`` prefix is the shortest common prefix of
    neighbours in it, kept one token short of its shortest prompt (each
    prompt needs a token of its own to read logits at). Walking the sorted
    list, a prompt joins the current batch unless the batch is full or
    joining wastes more than ``SPLIT_COST_TOKENS`` of recompute: the members'
    prefix shrinking (members x tokens lost) plus what the prompt would share
    with its successor in a fresh batch. So batches end at steering-group
    boundaries instead of straddling them, as fixed chunks would.
    """
    order = sorted(range(len(ids)), key=ids.__getitem__)
    seqs = [ids[i] for i in order]
    links = [min(common_prefix_length(a, b), len(a) - 1, len(b) - 1) for a, b in zip(seqs, seqs[1:])] + [0]
    batches: list[tuple[list[int], int]] = []
    members: list[int] = []
    shared = 0
    for j, i in enumerate(order):
        if members:
            new = links[j - 1] if len(members) == 1 else min(shared, links[j - 1])
            lost = (len(members) * (shared - new) if len(members) > 1 else 0) + max(0, links[j] - new)
            if len(members) < batch_size and lost <= SPLIT_COST_TOKENS:
                members.append(i)
                shared = new
                continue
            batches.append((members, shared if len(members) > 1 else 0))
        members, shared = [i], 0
    if members:
        batches.append((members, shared if len(members) > 1 else 0))
    return batches


class PrefixSharingLM:
    """Next-token log-probs of many prompts from one causal LM, batched, each batch's common prefix run once.

    Token sequences are grouped by :func:`plan_batches` (sorted by ids, at
    most ``batch_size`` each, cut where the shared prefix would collapse). In
    each batch the common prefix runs once (batch 1) and its KV cache is
    repeated over the batch; only the right-padded suffixes then run, with
    an attention mask and explicit position ids, and logits are taken at each
    sequence's last real token. Used by the option scorer and the few-shot
    sentiment teacher, whose prompts share long steering or example prefixes.
    ``reuse_prefix=False`` runs each batch whole (benchmarks, debugging).
    """

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 16, reuse_prefix: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.batch_size, self.reuse_prefix = model, batch_size, reuse_prefix
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._pad_id = pad if pad is not None else 0
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        # transformers 5 (5.24 here) renamed forward(past_key_values=) to forward(cache=); the old
        # name warns until 5.40. vLLM's GPU environment pins an older transformers: take either.
        params = inspect.signature(base.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"

    def batches(self, ids: list[list[int]]) -> Iterator[tuple[list[int], torch.Tensor]]:
        """``(indices, log-probs [len(indices), vocab])`` per batch; every index of ``ids`` appears once."""
        with torch.inference_mode():
            for batch, shared in plan_batches(ids, self.batch_size):
                yield batch, self._next_token_logprobs([ids[i] for i in batch], shared if self.reuse_prefix else 0)

    def _next_token_logprobs(self, seqs: list[list[int]], shared: int) -> torch.Tensor:
        """Log-softmax of the next-token logits after each sequence (their first ``shared`` tokens equal)."""
        device = self.model.device
        n = len(seqs)
        extra: dict[str, Any] = {}
        if shared > 0:
            prefix = torch.tensor([seqs[0][:shared]], device=device)
            out = self.model(input_ids=prefix, use_cache=True, logits_to_keep=1)  # only the cache is needed
            cache = out["cache"] if "cache" in out else out["past_key_values"]
            cache.batch_repeat_interleave(n)
            extra = {self._cache_kwarg: cache, "use_cache": True}
        suffixes = [s[shared:] for s in seqs]
        lengths = torch.tensor([len(s) for s in suffixes])
        width = int(lengths.max())
        input_ids = torch.full((n, width), self._pad_id, dtype=torch.long)
        for i, s in enumerate(suffixes):
            input_ids[i, : len(s)] = torch.tensor(s)
        # Right padding: a real token never attends to a pad (pads come after it); the mask
        # still marks them so implementations that check it see the true lengths.
        mask = torch.cat([torch.ones(n, shared, dtype=torch.long), torch.arange(width)[None, :] < lengths[:, None]], 1)
        positions = (shared + torch.arange(width)).expand(n, width)
        last = lengths - 1
        # Only project the positions we read onto the vocabulary (1-D logits_to_keep works on
        # transformers 4.5x and 5.x alike); then pick each row's own last position.
        keep, row_pos = torch.unique(last, return_inverse=True)
        out = self.model(
            input_ids=input_ids.to(device), attention_mask=mask.to(device),
            position_ids=positions.to(device), logits_to_keep=keep.to(device), **extra,
        )
        logits = out.logits[torch.arange(n, device=device), row_pos.to(device)]
        return torch.log_softmax(logits.float(), dim=-1)


class TransformersOptionScorer:
    """Score prompts with a Hugging Face causal LM (optionally a PEFT model), batched with prefix reuse.

    Prompts are tokenised with :func:`encode_prompts` and run through
    :class:`PrefixSharingLM` (batches of prompts with a common token prefix,
    the prefix run once over a shared KV cache).
    ``adapter=None`` scores the base model (adapters disabled); a name
    scores with that PEFT adapter. ``reuse_prefix=False`` runs each batch
    whole (for benchmarks and debugging). Results come back in input order.
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
