"""Next-token log-probs of many prompts from one causal LM, every shared token prefix computed once.

Survey prompts share prefixes at several levels: the steering question
shared by all groups of one attribute, a group's answer and the instruction
after it shared by all questions put to that group, question stems shared by
the items of a battery. The prompts' token sequences form a radix tree (a
trie whose single-child chains are merged into one segment); running each
segment once, on top of its parent's KV cache, computes exactly the trie's
distinct positions: the minimum for any exact method that reuses KV across
prompts. This is the idea of SGLang's RadixAttention (Zheng et al. 2024,
"SGLang: Efficient Execution of Structured Language Model Programs",
arXiv:2312.07104; github.com/sgl-project/sglang), here as one batched pass
over a known set of prompts rather than a cache of a serving engine.

Segments run level by level: a level's segments are sorted by length and
batched, each row holding its own parent's cached keys and values (padded to
the longest context, padding masked out) and its segment left-padded, so
every row's last token sits in the last column and the vocabulary is
projected there only. Position ids are each token's depth in its prompt, so
the result equals a forward of each whole prompt. A left pad of a row with no
context attends to nothing: PyTorch's SDPA returns zeros there (its safe
softmax, pytorch/pytorch#133882) and eager attention's finite mask an average;
no real token reads a pad either way. Attention kernels that unpad by the
mask (flash-attention's varlen path) assume no holes in it; the default SDPA
and eager implementations, which ``load_causal_lm`` uses, take any mask.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence
from transformers.cache_utils import DynamicCache, DynamicLayer

# A prefix shared by c children is its own tree node only if that saves at least this many token positions
# ((c - 1) x its length): below that, the extra level of forward passes costs more than the positions saved.
# 16 ran the fewest positions of 0..256 on SubPOP's prompts for both tiny Llama and SmolLM2 (bench/scoring.py).
MIN_SAVING_TOKENS = 16


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of leading positions where ``a`` and ``b`` agree."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


@dataclass
class Segment:
    """One radix-tree node: the tokens at depths ``start..start+len(tokens)`` shared by every prompt below it.

    ``reads`` are ``(prompt index, offset)`` pairs: the prompt ends at this
    offset of the segment, so its next-token distribution is read there.
    ``parent`` is the index of the segment before it (-1 at the root).
    """

    start: int
    tokens: list[int]
    parent: int
    level: int
    reads: list[tuple[int, int]] = field(default_factory=list)
    children: int = 0


def prefix_tree(ids: Sequence[Sequence[int]], min_saving: int = MIN_SAVING_TOKENS) -> list[Segment]:
    """The radix tree of token sequences: every distinct prefix position belongs to exactly one segment.

    Built from the sorted sequences: the prompts below a node are a
    contiguous run of the sorted list, and the run's common prefix is that
    of its first and last member. A node whose sharing would save fewer than
    ``min_saving`` positions ((children - 1) x its length) is not a segment
    of its own: its tokens start each child's segment instead, which costs
    those positions but saves a tree level (a forward pass) below it. Raises
    ``ValueError`` for an empty sequence (no position to read a next token at).
    """
    if any(len(seq) == 0 for seq in ids):
        raise ValueError("every token sequence needs at least one token")
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    segments: list[Segment] = []
    # (run of sorted prompts lo:hi, where its pending segment starts, parent, level)
    stack = [(0, len(order), 0, -1, 0)] if order else []
    while stack:
        lo, hi, start, parent, level = stack.pop()
        end = common_prefix_length(ids[order[lo]], ids[order[hi - 1]])
        ending = lo
        while ending < hi and len(ids[order[ending]]) == end:  # shorter sequences sort first
            ending += 1
        branches = []
        j = ending
        while j < hi:  # the rest branch on their token at depth ``end``
            k, token = j, ids[order[j]][end]
            while k < hi and ids[order[k]][end] == token:
                k += 1
            branches.append((j, k))
            j = k
        if end > start and (ending > lo or (len(branches) - 1) * (end - start) >= min_saving):
            segments.append(Segment(start, list(ids[order[lo]][start:end]), parent, level))
            if parent >= 0:
                segments[parent].children += 1
            parent, level, start = len(segments) - 1, level + 1, end
            segments[parent].reads.extend((order[i], end - 1 - segments[parent].start) for i in range(lo, ending))
        stack.extend((j, k, start, parent, level) for j, k in branches)
    return segments


def plan_levels(segments: Sequence[Segment], batch_size: int) -> list[list[list[int]]]:
    """Per tree level, the batches of segment indices to run together (sorted by length, ``batch_size`` each).

    A level only needs the level before it, so its segments may come from
    different parents; sorting by length keeps left-padding small.
    """
    levels: dict[int, list[int]] = {}
    for index, seg in enumerate(segments):
        levels.setdefault(seg.level, []).append(index)
    plan = []
    for level in sorted(levels):
        members = sorted(levels[level], key=lambda i: (len(segments[i].tokens), segments[i].start))
        plan.append([members[k:k + batch_size] for k in range(0, len(members), batch_size)])
    return plan


def positions_run(ids: Sequence[Sequence[int]], batch_size: int, reuse_prefix: bool = True,
                  min_saving: int = MIN_SAVING_TOKENS) -> tuple[int, int]:
    """``(token positions, forward passes)`` the transformer runs for ``ids``, padding included (for benchmarks)."""
    if not reuse_prefix:
        batches = _whole_batches(ids, batch_size)
        return sum(len(b) * max(len(ids[i]) for i in b) for b in batches), len(batches)
    segments = prefix_tree(ids, min_saving)
    batches = [batch for level in plan_levels(segments, batch_size) for batch in level]
    return sum(len(batch) * max(len(segments[i].tokens) for i in batch) for batch in batches), len(batches)


def _whole_batches(ids: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    return [order[k:k + batch_size] for k in range(0, len(order), batch_size)]


def _cache_layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer ``(keys, values)`` ``[batch, kv_heads, length, head_dim]`` of a transformers (>= 4.56) KV cache."""
    return [(layer.keys, layer.values) for layer in cache.layers]


class PrefixSharingLM:
    """Next-token log-probs of many prompts from one causal LM, each shared prefix run once (module docstring).

    Used by the option scorer and the few-shot sentiment teacher, whose
    prompts share long steering or example prefixes. ``batch_size`` bounds
    the rows of one forward pass; ``min_saving`` is :func:`prefix_tree`'s.
    ``reuse_prefix=False`` runs every prompt whole in length-sorted,
    left-padded batches (benchmarks, debugging).
    """

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 16, reuse_prefix: bool = True,
                 min_saving: int = MIN_SAVING_TOKENS):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.batch_size, self.reuse_prefix = model, batch_size, reuse_prefix
        self.min_saving = min_saving
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._pad_id = pad if pad is not None else 0
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        # transformers 5 renamed forward(past_key_values=) to forward(cache=); vLLM's GPU
        # environment pins an older transformers: take either.
        params = inspect.signature(base.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"

    def batches(self, ids: list[list[int]]) -> Iterator[tuple[list[int], torch.Tensor]]:
        """``(prompt indices, log-probs [len(indices), vocab])`` per forward; every index of ``ids`` appears once."""
        with torch.inference_mode():
            if not self.reuse_prefix:
                for batch in _whole_batches(ids, self.batch_size):
                    segments = [Segment(0, list(ids[i]), -1, 0, [(i, len(ids[i]) - 1)]) for i in batch]
                    yield from self._run(segments, {})
                return
            segments = prefix_tree(ids, self.min_saving)
            contexts: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
            for level in plan_levels(segments, self.batch_size):
                done: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
                for batch in level:
                    rows = [segments[i] for i in batch]
                    parents = {i: contexts[segments[i].parent] for i in batch if segments[i].parent >= 0}
                    for out in self._run(rows, parents, batch, done):
                        yield out
                contexts = done  # a level's caches are only needed by the next one

    def _run(
        self, rows: list[Segment], parents: dict[int, list], names: list[int] | None = None,
        done: dict[int, list] | None = None,
    ) -> Iterator[tuple[list[int], torch.Tensor]]:
        """One forward pass over ``rows``; yields their reads' log-probs and keeps the caches of rows with children.

        ``parents`` maps a row's name (its segment index in ``names``) to its
        parent's cache: per layer ``(keys, values)`` of shape
        ``[context, kv_heads, head_dim]``, the context being every earlier
        position of that row's prompts. A level's rows all have parents, or
        (the first level) none.
        """
        device = self.model.device
        names = names if names is not None else list(range(len(rows)))
        contexts = [parents.get(name) for name in names]
        lengths = [len(seg.tokens) for seg in rows]
        context_lengths = [ctx[0][0].shape[0] if ctx else 0 for ctx in contexts]
        width, context = max(lengths), max(context_lengths)
        pads = torch.tensor([width - length for length in lengths])[:, None]
        input_ids = torch.tensor([[self._pad_id] * (width - len(seg.tokens)) + seg.tokens for seg in rows])
        # Pads get the depth of the row's first token: any valid position works, they are masked out.
        starts = torch.tensor([seg.start for seg in rows])[:, None]
        positions = starts + (torch.arange(width)[None, :] - pads).clamp(min=0)
        columns = torch.arange(context + width)[None, :]
        mask = ((columns < torch.tensor(context_lengths)[:, None]) | (columns >= context + pads)).long()
        extra: dict[str, Any] = {}
        if context:
            extra = {self._cache_kwarg: self._batch_cache(contexts, context, width)}
        # Left padding puts every row's last token in the last column; reads elsewhere (a prompt
        # that is a prefix of another) add their columns. Only those are projected onto the vocabulary.
        reads = [(r, width - lengths[r] + offset, prompt) for r, seg in enumerate(rows) for prompt, offset in seg.reads]
        keep = sorted({column for _, column, _ in reads}) or [width - 1]
        keep_index = {column: k for k, column in enumerate(keep)}
        out = self.model(
            input_ids=input_ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
            logits_to_keep=torch.tensor(keep, device=device), use_cache=True, **extra,
        )
        if done is not None and any(seg.children for seg in rows):
            layers = _cache_layers(out["cache"] if "cache" in out else out["past_key_values"])
            for r, seg in enumerate(rows):
                if seg.children:
                    real = torch.cat([torch.arange(context_lengths[r]),
                                      torch.arange(context + width - lengths[r], context + width)]).to(device)
                    done[names[r]] = [(k[r].index_select(1, real).transpose(0, 1),
                                       v[r].index_select(1, real).transpose(0, 1)) for k, v in layers]
        if reads:
            rows_at = torch.tensor([r for r, _, _ in reads], device=device)
            cols_at = torch.tensor([keep_index[c] for _, c, _ in reads], device=device)
            logits = out.logits[rows_at, cols_at]
            yield [prompt for _, _, prompt in reads], torch.log_softmax(logits.float(), dim=-1)

    def _batch_cache(self, contexts: list[list], length: int, width: int) -> Any:
        """A cache holding each row's context, right-padded to ``length`` (masked), with room for ``width`` more.

        Contexts are kept per layer as ``[positions, kv_heads, head_dim]``, so
        one ``pad_sequence`` per layer stacks a batch's contexts (zero padding: masked
        entries must still be finite, since NaN times attention weight 0 is
        NaN). The forward writes its keys and values into the room left
        (:class:`_RoomyLayer`) instead of concatenating new tensors.
        """
        layers = []
        for layer in range(len(contexts[0])):
            stacked = []
            for part in (0, 1):  # keys, values
                padded = pad_sequence([ctx[layer][part] for ctx in contexts], batch_first=True).transpose(1, 2)
                full = padded.new_empty((*padded.shape[:2], length + width, padded.shape[3]))
                full[:, :, :length] = padded
                stacked.append(full)
            layers.append(_RoomyLayer(*stacked, length))
        cache = DynamicCache()
        cache.layers = layers
        return cache


class _RoomyLayer(DynamicLayer):
    """A transformers cache layer whose tensors already hold ``length`` cached positions and room for the rest.

    ``update`` copies the forward's new keys and values into the room and
    returns the whole tensors, as :class:`~transformers.DynamicLayer` would
    after concatenating them.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
        super().__init__()
        self._keys, self._values, self._length = keys, values, length
        self.device, self.dtype, self.is_initialized = keys.device, keys.dtype, True
        self.keys, self.values = keys[:, :, :length], values[:, :, :length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        """Write the new positions after the cached ones; returns ``(keys, values)`` up to them."""
        end = self._length + key_states.shape[-2]
        self._keys[:, :, self._length:end] = key_states
        self._values[:, :, self._length:end] = value_states
        self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
        return self.keys, self.values
