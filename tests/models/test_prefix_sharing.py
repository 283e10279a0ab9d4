"""The prompts' radix tree and the forward pass over it: exact, every prompt once, the trie's positions only."""

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from demoscope.models.prefix_sharing import PrefixSharingLM, plan_levels, positions_run, prefix_tree


def distinct_prefixes(ids) -> int:
    """The trie minimum, by definition: how many different non-empty prefixes the sequences have."""
    return len({tuple(seq[:k]) for seq in ids for k in range(1, len(seq) + 1)})


def path_tokens(segments, index) -> list[int]:
    """Every token from the root down to the end of segment ``index``."""
    tokens = []
    while index >= 0:
        tokens = segments[index].tokens + tokens
        index = segments[index].parent
    return tokens


# Prompts built from a few shared pieces, so that they share prefixes at several levels, repeat, and end
# inside one another, as steering prefixes, group answers and question stems do.
_piece = st.lists(st.integers(0, 5), min_size=0, max_size=6)
_prompts = st.lists(st.lists(st.sampled_from(range(4)), min_size=1, max_size=4), min_size=1, max_size=12)


@st.composite
def token_sequences(draw):
    pieces = [draw(_piece) for _ in range(4)]
    seqs = [sum((pieces[k] for k in choice), []) + draw(st.lists(st.integers(0, 5), max_size=3))
            for choice in draw(_prompts)]
    return [seq or [0] for seq in seqs]


@settings(max_examples=300, deadline=None)
@given(ids=token_sequences(), min_saving=st.sampled_from([0, 1, 4, 16, 10**6]), batch_size=st.integers(1, 5))
def test_the_tree_reads_every_prompt_once_at_its_last_token(ids, min_saving, batch_size):
    segments = prefix_tree(ids, min_saving)
    reads = sorted((prompt, index, offset) for index, seg in enumerate(segments) for prompt, offset in seg.reads)
    assert [prompt for prompt, _, _ in reads] == list(range(len(ids)))
    for prompt, index, offset in reads:
        seg = segments[index]
        assert path_tokens(segments, seg.parent) + seg.tokens[:offset + 1] == list(ids[prompt])
    for index, seg in enumerate(segments):
        assert seg.tokens  # no empty forward rows
        assert seg.start == len(path_tokens(segments, seg.parent))
        parent = segments[seg.parent] if seg.parent >= 0 else None
        assert seg.level == (parent.level + 1 if parent else 0)
        assert seg.children == sum(other.parent == index for other in segments)
    # every level's batches hold each of its segments once, and only its own
    plan = plan_levels(segments, batch_size)
    flat = [i for level in plan for batch in level for i in batch]
    assert sorted(flat) == list(range(len(segments)))
    assert all(len(batch) <= batch_size for level in plan for batch in level)
    assert all(len({segments[i].level for i in batch}) == 1 for level in plan for batch in level)
    # with no threshold the tree runs exactly the distinct prefixes; a threshold only trades positions for levels
    positions = sum(len(seg.tokens) for seg in segments)
    if min_saving == 0:
        assert positions == distinct_prefixes(ids)
    assert distinct_prefixes(ids) <= positions <= sum(len(seq) for seq in ids)
    assert positions_run(ids, batch_size, min_saving=min_saving)[0] >= positions


def test_a_steering_prefix_is_run_once_and_splits_only_where_sharing_pays():
    steer_a, steer_b = list(range(100, 180)), list(range(200, 280))  # two 80-token steering prefixes
    stem = list(range(300, 303))  # a 3-token stem shared by two questions: not worth a level at 16
    ids = [steer_a + [k, k + 1] for k in range(10)] + [steer_b + [k] for k in range(7)]
    ids += [steer_a + stem + [1], steer_a + stem + [2]]
    segments = prefix_tree(ids, min_saving=16)
    roots = sorted(seg.tokens for seg in segments if seg.parent < 0)
    assert roots == [steer_a, steer_b]
    leaves = [path_tokens(segments, i) for i, seg in enumerate(segments) if not seg.children]
    assert sorted(leaves) == sorted(ids)  # the stem was folded into its two questions
    assert len(prefix_tree(ids, min_saving=0)) == len(segments) + 1  # ... and is a node of its own at 0


def test_empty_sequences_are_refused():
    with pytest.raises(ValueError, match="at least one token"):
        prefix_tree([[1, 2], []])
    assert prefix_tree([]) == []


def plain_next_token_logprobs(model, ids) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [torch.log_softmax(model(input_ids=torch.tensor([seq])).logits[0, -1].float(), -1) for seq in ids]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("seed", [0, 1])
def test_tree_forward_equals_each_prompt_alone(arch, seed, llama, gpt2):
    """Random prompts with shared pieces, duplicates and prompts that end inside others, on two architectures."""
    model, tok = llama if arch == "llama" else gpt2
    rng = random.Random(seed)
    pieces = [[rng.randrange(3, 2000) for _ in range(rng.randrange(1, 40))] for _ in range(5)]
    ids = [sum((pieces[rng.randrange(5)] for _ in range(rng.randrange(1, 4))), []) for _ in range(30)]
    ids += [ids[0], ids[1][:1], ids[2][: max(1, len(ids[2]) // 2)]]
    want = plain_next_token_logprobs(model, ids)
    for batch_size, min_saving, reuse in ((1, 0, True), (4, 0, True), (16, 16, True), (5, 16, False)):
        got = {}
        for indices, logp in PrefixSharingLM(model, tok, batch_size, reuse, min_saving).batches(ids):
            for i, row in zip(indices, logp):
                assert i not in got
                got[i] = row
        assert sorted(got) == list(range(len(ids)))
        for i, row in got.items():
            torch.testing.assert_close(row.exp(), want[i].exp(), atol=1e-6, rtol=0)


def test_each_level_is_one_batched_forward_of_the_planned_positions(llama, monkeypatch):
    model, tok = llama
    steer = list(range(10, 70))
    ids = [steer + [100 + k] * (5 + k) for k in range(6)] + [[7, 8, 9]]
    shapes = []
    real_forward = model.forward

    def spy(*args, **kwargs):
        shapes.append(tuple(kwargs["input_ids"].shape))
        return real_forward(*args, **kwargs)

    lm = PrefixSharingLM(model, tok, batch_size=8)
    monkeypatch.setattr(model, "forward", spy)
    list(lm.batches(ids))
    # level 0: the steering prefix and the lone prompt in one row each; level 1: the six questions only
    assert shapes == [(2, 60), (6, 10)]
    assert positions_run(ids, 8) == (sum(rows * width for rows, width in shapes), len(shapes))
