"""Teacher soft labels (reference D.1): prompt text, example picking, label tokens, restricted softmax."""

import numpy as np
import pytest
import torch

from demoscope.distill import (
    TeacherLabeler,
    few_shot_prompt,
    label_token_ids,
    pick_examples,
    soft_label_frame,
)
from demoscope.errors import ConfigError, ModelError

PROMPTS = [
    few_shot_prompt("A dull, dreary film.", [("Loved it.", 1), ("Awful.", 0), ("Great fun!", 1)]),
    "Text: ok\nSentiment: ",
    few_shot_prompt("Jamel said the movie was wonderful and the acting was superb in every scene.",
                    [("Meh.", 0), ("Brilliant.", 1), ("Boring plot.", 0)]),
    "Hi",
    few_shot_prompt("Fine.", []),
]


def test_prompt_is_exactly_the_reference_format():
    prompt = few_shot_prompt("What a film!", [("Great.", 1), ("Bad acting.", 0), ("Loved it", 1)])
    assert prompt == (
        "Classify the sentiment of the following texts as either Negative, or Positive.\n\n"
        "Text: Great.\nSentiment: Positive\n\n"
        "Text: Bad acting.\nSentiment: Negative\n\n"
        "Text: Loved it\nSentiment: Positive\n\n"
        "Text: What a film!\nSentiment: "
    )
    assert prompt.endswith("Sentiment: ")  # the trailing space the label token follows
    with pytest.raises(ConfigError):
        few_shot_prompt("x", [("y", 2)])


def test_train_examples_are_three_other_rows_and_seeded():
    texts = [f"review {i}" for i in range(10)]
    labels = [i % 2 for i in range(10)]
    picked = pick_examples(texts, labels, "train", seed=3)
    assert len(picked) == 10
    for i, examples in enumerate(picked):
        assert len(examples) == 3 and len({t for t, _ in examples}) == 3
        assert texts[i] not in {t for t, _ in examples}
        assert all(labels[texts.index(t)] == y for t, y in examples)
    assert picked == pick_examples(texts, labels, "train", seed=3)
    assert picked != pick_examples(texts, labels, "train", seed=4)
    # With four rows each row must get exactly the three others.
    small = pick_examples(texts[:4], labels[:4], "train", seed=0)
    assert all({t for t, _ in ex} == set(texts[:4]) - {texts[i]} for i, ex in enumerate(small))
    with pytest.raises(ConfigError):
        pick_examples(texts[:3], labels[:3], "train")


def test_test_rows_share_one_fixed_sample_of_training_rows():
    texts = [f"review {i}" for i in range(10)]
    labels = [i % 2 for i in range(10)]
    picked = pick_examples(texts, labels, "test", n_rows=5, seed=1)
    assert len(picked) == 5 and all(ex == picked[0] for ex in picked)
    assert len({t for t, _ in picked[0]}) == 3 and {t for t, _ in picked[0]} <= set(texts)
    assert picked == pick_examples(texts, labels, "test", n_rows=5, seed=1)
    with pytest.raises(ConfigError):
        pick_examples(texts, labels, "test")


def test_label_tokens_with_and_without_a_leading_space(llama_teacher):
    _, tok = llama_teacher
    plain = label_token_ids(tok)
    spaced = label_token_ids(tok, leading_space=True)
    assert plain == [tok.encode("Negative", add_special_tokens=False)[0],
                     tok.encode("Positive", add_special_tokens=False)[0]]
    assert spaced == [tok.encode(" Negative", add_special_tokens=False)[0],
                      tok.encode(" Positive", add_special_tokens=False)[0]]
    assert plain != spaced
    # "Negative" and "Neutral" both start with the token "Ne" in the tiny tokenizer.
    with pytest.raises(ModelError, match="share their first token"):
        label_token_ids(tok, ("Negative", "Neutral"))


def _full_softmax_reference(model, tok, prompt, ids):
    """One prompt, no padding, default positions: full-vocab softmax, then renormalised over the label ids."""
    enc = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits[0, -1].double()
    probs = torch.softmax(logits, dim=-1)[ids]
    return (probs / probs.sum()).numpy()


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("leading_space", [False, True])
def test_restricted_softmax_equals_renormalised_full_softmax(arch, leading_space, llama_teacher, gpt2_teacher):
    model, tok = llama_teacher if arch == "llama" else gpt2_teacher
    labeler = TeacherLabeler(model, tok, leading_space=leading_space, batch_size=3)
    probs = labeler.probabilities(PROMPTS)
    assert probs.shape == (len(PROMPTS), 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    ids = label_token_ids(tok, leading_space=leading_space)
    # gpt2 has absolute positions: this also checks left padding uses per-row position ids.
    expected = np.stack([_full_softmax_reference(model, tok, p, ids) for p in PROMPTS])
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert np.ptp(probs[:, 1]) > 1e-4  # the prompts really get different scores


def test_batching_and_order_do_not_change_probabilities(gpt2_teacher):
    model, tok = gpt2_teacher
    single = TeacherLabeler(model, tok, batch_size=1).probabilities(PROMPTS)
    batched = TeacherLabeler(model, tok, batch_size=16).probabilities(PROMPTS)
    np.testing.assert_allclose(batched, single, atol=1e-5)
    order = [3, 0, 4, 2, 1]
    permuted = TeacherLabeler(model, tok, batch_size=2).probabilities([PROMPTS[i] for i in order])
    np.testing.assert_allclose(permuted, single[order], atol=1e-5)
    assert TeacherLabeler(model, tok).probabilities([]).shape == (0, 2)


def test_soft_label_frame_has_the_seed_schema():
    frame = soft_label_frame(["a", "b"], [0, 1], np.array([[0.8, 0.2], [0.3, 0.7]]))
    assert list(frame.columns) == ["text", "label", "label_0", "label_1"]
    assert frame["label_1"].tolist() == [0.2, 0.7] and frame["label"].tolist() == [0, 1]
    with pytest.raises(ConfigError):
        soft_label_frame(["a"], [0], np.array([[0.5, 0.5], [0.5, 0.5]]))
