"""The weak-to-strong guidance score: how much more the tuned small model likes a response than the untuned one.

``score(x, y) = log pi_tuned(y | x) - log pi_untuned(y | x)``, summed over
every response token so far, plus the EOS term when the response is finished
(``reference`` B.1, the reference's ``ImplicitValueScorer``). Each small model
reads ``template.format(raw_prompt=...) + response_text`` tokenized with its
own tokenizer (so it may differ from the large model's); labels start at the
common token prefix of the prompt alone and prompt + response, never at
position 0; EOS is appended when finished.

Two implementations that agree to float rounding:
:func:`guidance_scores` recomputes every sequence from scratch (the
reference's way), :class:`GuidanceScorer` keeps a KV cache per beam and each
chunk feeds only the tokens that are new. Re-tokenizing ``prompt + response``
after a chunk usually extends the previous tokenization; when it does not
(a BPE merge across the chunk boundary, a multi-byte character completed by
the next chunk, the response merging into the prompt's last token), the
cached entries from the first differing token on are masked out and the
tokens from one before it are fed again, so the result is still exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, ContextManager

import torch

from demoscope.decoding.lm import cache_kwarg, encode, forward
from demoscope.errors import ModelError
from demoscope.models.prefix_sharing import common_prefix_length

# SmallModel.adapter default: run the model as it is (whatever adapter is active, if any).
AS_IS = "<as-is>"


@dataclass(frozen=True)
class SmallModel:
    """One guidance model with its tokenizer and prompt template (``"{raw_prompt}"``, or a chat template).

    ``adapter`` selects a PEFT adapter for this model's forwards: a name
    activates it, ``None`` disables adapters (the base model), the default
    leaves the model as it is. So one LoRA-tuned ``PeftModel`` can be both
    the tuned (``adapter="dpo"``) and the untuned (``adapter=None``) model.
    """

    model: Any
    tokenizer: Any
    template: str = "{raw_prompt}"
    adapter: str | None = AS_IS

    def context(self) -> ContextManager:
        """The adapter selection to run this model's forwards in."""
        if self.adapter == AS_IS:
            return nullcontext()
        from demoscope.models.scoring import adapter_context

        return adapter_context(self.model, self.adapter)

    def prompt(self, raw_prompt: str) -> str:
        """The text this model is conditioned on."""
        return self.template.format(raw_prompt=raw_prompt)

    def eos_id(self) -> int:
        """The EOS id appended to finished responses."""
        if self.tokenizer.eos_token_id is None:
            raise ModelError(f"guidance tokenizer {getattr(self.tokenizer, 'name_or_path', '')!r} has no EOS token")
        return int(self.tokenizer.eos_token_id)


@dataclass(frozen=True)
class Guide:
    """The tuned/untuned small-model pair that steers the large model.

    ``add_special_tokens`` is how the small models' texts are tokenized; the
    reference uses ``False`` (GPT-2 has no BOS anyway).
    """

    tuned: SmallModel
    untuned: SmallModel
    add_special_tokens: bool = False

    @classmethod
    def from_models(
        cls, tuned: Any, untuned: Any, tokenizer: Any, template: str = "{raw_prompt}", add_special_tokens: bool = False,
    ) -> "Guide":
        """A guide whose two models share one tokenizer and template (the reference's setting)."""
        return cls(SmallModel(tuned, tokenizer, template), SmallModel(untuned, tokenizer, template), add_special_tokens)

    @classmethod
    def from_adapter(
        cls, peft_model: Any, adapter: str, tokenizer: Any, template: str = "{raw_prompt}",
        add_special_tokens: bool = False,
    ) -> "Guide":
        """Tuned = ``peft_model`` with ``adapter`` active, untuned = the same model with adapters disabled."""
        return cls(
            SmallModel(peft_model, tokenizer, template, adapter), SmallModel(peft_model, tokenizer, template, None),
            add_special_tokens,
        )


def _label_start(prompt_ids: Sequence[int], ids: Sequence[int]) -> int:
    """First scored position: after the common prefix with the prompt's tokens, and never 0 (nothing predicts it)."""
    return max(common_prefix_length(prompt_ids, ids), 1)


def response_logprobs(
    small: SmallModel, raw_prompt: str, responses: Sequence[str], finished: Sequence[bool],
    add_special_tokens: bool = False, batch_size: int = 16,
) -> torch.Tensor:
    """``log pi(response | prompt)`` per response (float64), recomputed from scratch, EOS included when finished.

    Sequences are right-padded into batches of ``batch_size``; log-softmax in
    float32 (the reference casts logits to fp32), sums in float64.
    """
    if len(responses) != len(finished):
        raise ValueError(f"got {len(responses)} responses but {len(finished)} finished flags")
    prompt = small.prompt(raw_prompt)
    prompt_ids = encode(small.tokenizer, prompt, add_special_tokens)
    eos = small.eos_id()
    seqs = [
        encode(small.tokenizer, prompt + r, add_special_tokens) + ([eos] if f else [])
        for r, f in zip(responses, finished)
    ]
    out = torch.zeros(len(seqs), dtype=torch.float64)
    device = small.model.device
    with torch.inference_mode(), small.context():
        for lo in range(0, len(seqs), batch_size):
            batch = seqs[lo:lo + batch_size]
            width = max(len(s) for s in batch)
            if width < 2:
                continue  # nothing scored: position 0 has no prediction
            ids = torch.full((len(batch), width), eos, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, s in enumerate(batch):
                ids[i, :len(s)], mask[i, :len(s)] = torch.tensor(s, dtype=torch.long), 1
            logits = small.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            token_logp = logp.gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1).double().cpu()
            for i, s in enumerate(batch):
                start = _label_start(prompt_ids, s)
                out[lo + i] = token_logp[i, start - 1:len(s) - 1].sum()
    return out


def guidance_scores(
    guide: Guide, raw_prompt: str, responses: Sequence[str], finished: Sequence[bool], batch_size: int = 16,
) -> torch.Tensor:
    """Guidance score per response by full recomputation: ``log pi_tuned - log pi_untuned`` (float64)."""
    tuned = response_logprobs(guide.tuned, raw_prompt, responses, finished, guide.add_special_tokens, batch_size)
    untuned = response_logprobs(guide.untuned, raw_prompt, responses, finished, guide.add_special_tokens, batch_size)
    return tuned - untuned


class IncrementalLogProb:
    """``log pi(response | prompt)`` for a set of beams, one small model, feeding only new tokens each call.

    Per beam we keep the token ids represented in the cache, the cache slot
    of each, each position's token log-prob, and the log-softmax after the
    last token (it scores the next chunk's first token and the EOS term).
    The cache is one rectangular batch: a call appends ``max(new tokens)``
    slots to every beam, right-padding the shorter ones; pads and entries
    invalidated by re-tokenization are masked out of attention and positions
    are passed explicitly, so each beam sees exactly its own token sequence.
    """

    def __init__(self, small: SmallModel, add_special_tokens: bool = False):
        self.small, self.add_special_tokens = small, add_special_tokens
        self.eos_id = small.eos_id()
        pad = small.tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.eos_id
        self._kwarg = cache_kwarg(small.model)
        self.stats = {"fed_tokens": 0, "refed_beams": 0, "forwards": 0}
        self._cache: Any = None

    @property
    def rows(self) -> int:
        """Number of beams tracked."""
        return len(self._ids)

    def reset(self, raw_prompt: str, rows: int = 1) -> None:
        """Start ``rows`` beams with an empty response to ``raw_prompt`` (the prompt is encoded once and shared)."""
        self._prompt = self.small.prompt(raw_prompt)
        self._prompt_ids = encode(self.small.tokenizer, self._prompt, self.add_special_tokens)
        n = len(self._prompt_ids)
        device = self.small.model.device
        self._cache, self._last = None, None
        if n:
            with torch.inference_mode(), self.small.context():
                ids = torch.tensor([self._prompt_ids], device=device)
                logits, self._cache = forward(self.small.model, ids, None, self._kwarg, logits_to_keep=1)
            self.stats["forwards"] += 1
            self.stats["fed_tokens"] += n
            self._cache.batch_repeat_interleave(rows)
            self._last = torch.log_softmax(logits[:, -1].float(), dim=-1).repeat(rows, 1)
        self._mask = torch.ones(rows, n, dtype=torch.long, device=device)
        self._ids = [list(self._prompt_ids) for _ in range(rows)]
        self._slots = [list(range(n)) for _ in range(rows)]
        # Prompt positions are never scored (labels start at or after a re-fed position): NaN marks that.
        self._logp = [[math.nan] * n for _ in range(rows)]

    def select(self, rows: Sequence[int]) -> None:
        """Keep beams ``rows`` in that order; an index may repeat (a beam's K successors)."""
        idx = torch.tensor(list(rows), dtype=torch.long, device=self._mask.device)
        if self._cache is not None:
            self._cache.reorder_cache(idx)
        self._mask = self._mask[idx]
        if self._last is not None:
            self._last = self._last[idx]
        self._ids = [list(self._ids[i]) for i in rows]
        self._slots = [list(self._slots[i]) for i in rows]
        self._logp = [list(self._logp[i]) for i in rows]

    def update(self, responses: Sequence[str], finished: Sequence[bool]) -> torch.Tensor:
        """Bring each beam to ``prompt + responses[i]`` and return ``log pi(response | prompt)`` per beam (float64).

        ``finished[i]`` adds ``log pi(EOS | prompt + response)``.
        """
        if len(responses) != self.rows or len(finished) != self.rows:
            raise ValueError(f"tracking {self.rows} beams, got {len(responses)} responses and {len(finished)} flags")
        targets = [encode(self.small.tokenizer, self._prompt + r, self.add_special_tokens) for r in responses]
        starts, feeds = [], []
        for row, new in enumerate(targets):
            old = self._ids[row]
            same = common_prefix_length(old, new)
            if same == len(old):
                start = same  # extension: the stored last log-softmax scores new[same]
            else:
                start = max(same - 1, 0)  # diverged: re-feed from one before, whose output predicts new[same]
                self.stats["refed_beams"] += 1
                dropped = self._slots[row][start:]
                if dropped:
                    self._mask[row, dropped] = 0
            starts.append(start)
            feeds.append(new[start:])
        width = max(len(f) for f in feeds)
        if width:
            self._feed(targets, starts, feeds, width)
        scores = torch.zeros(self.rows, dtype=torch.float64)
        for row, new in enumerate(targets):
            scored = self._logp[row][_label_start(self._prompt_ids, new):]
            total = math.fsum(scored)
            if finished[row] and new:
                total += float(self._last[row, self.eos_id])
            scores[row] = total
        return scores

    def _feed(self, targets: list[list[int]], starts: list[int], feeds: list[list[int]], width: int) -> None:
        """Run the fed tokens of every beam through the model in one batch and record their log-probs."""
        rows, device = self.rows, self._mask.device
        ids = torch.full((rows, width), self.pad_id, dtype=torch.long)
        new_mask = torch.zeros((rows, width), dtype=torch.long)
        positions = torch.zeros((rows, width), dtype=torch.long)
        for row, (start, feed) in enumerate(zip(starts, feeds)):
            if feed:
                ids[row, :len(feed)] = torch.tensor(feed, dtype=torch.long)
                new_mask[row, :len(feed)] = 1
            positions[row] = start + torch.arange(width)
        base = self._mask.size(1)
        mask = torch.cat([self._mask, new_mask.to(device)], dim=1)
        with torch.inference_mode(), self.small.context():
            logits, self._cache = forward(
                self.small.model, ids.to(device), self._cache, self._kwarg,
                attention_mask=mask, position_ids=positions.to(device),
            )
        self.stats["forwards"] += 1
        self.stats["fed_tokens"] += sum(len(f) for f in feeds)
        self._mask = mask
        logp = torch.log_softmax(logits.float(), dim=-1)
        if self._last is None:  # an empty prompt: nothing was encoded at reset
            self._last = torch.full((rows, logp.size(-1)), math.nan, device=device)
        # Output j of a beam predicts its token start + j + 1; pads gather id 0 and are ignored.
        labels = torch.zeros((rows, width), dtype=torch.long)
        for row, (start, _feed) in enumerate(zip(starts, feeds)):
            nxt = targets[row][start + 1:]
            labels[row, :len(nxt)] = torch.tensor(nxt, dtype=torch.long)
        token_logp = logp.gather(-1, labels.to(device).unsqueeze(-1)).squeeze(-1).double().cpu().tolist()
        for row, (start, feed) in enumerate(zip(starts, feeds)):
            if not feed:
                continue
            old_logp, old_len = self._logp[row], len(self._ids[row])
            if start == 0:
                first = math.nan  # position 0: nothing predicts it
            elif start == old_len:
                first = float(self._last[row, feed[0]])  # extension: predicted by the stored last output
            else:
                first = old_logp[start]  # re-fed unchanged token: its log-prob is unchanged
            self._logp[row] = old_logp[:start] + [first] + token_logp[row][:len(feed) - 1]
            self._slots[row] = self._slots[row][:start] + list(range(base, base + len(feed)))
            self._ids[row] = list(targets[row])
            self._last[row] = logp[row, len(feed) - 1]


class GuidanceScorer:
    """Incremental guidance scores for a beam search: ``log pi_tuned - log pi_untuned`` per beam.

    Call :meth:`reset` per prompt, :meth:`score` after every chunk with each
    beam's whole response text so far, and :meth:`select` when the search
    keeps/duplicates beams. Each small model keeps its own per-beam KV cache
    (:class:`IncrementalLogProb`); results equal :func:`guidance_scores`.
    """

    def __init__(self, guide: Guide):
        self.guide = guide
        self.tuned = IncrementalLogProb(guide.tuned, guide.add_special_tokens)
        self.untuned = IncrementalLogProb(guide.untuned, guide.add_special_tokens)

    def reset(self, raw_prompt: str, rows: int = 1) -> None:
        """Start ``rows`` beams on ``raw_prompt`` with empty responses."""
        self.tuned.reset(raw_prompt, rows)
        self.untuned.reset(raw_prompt, rows)

    def score(self, responses: Sequence[str], finished: Sequence[bool]) -> torch.Tensor:
        """Guidance score (float64) of each beam's response so far; ``finished`` adds the EOS term."""
        return self.tuned.update(responses, finished) - self.untuned.update(responses, finished)

    def select(self, rows: Sequence[int]) -> None:
        """Reorder/duplicate beams: beam ``i`` becomes old beam ``rows[i]``."""
        self.tuned.select(rows)
        self.untuned.select(rows)
