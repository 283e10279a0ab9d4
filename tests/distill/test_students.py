"""Students (reference D.2): word vocabulary, BoW, Kim CNN, the tiny BERT classifier, one interface."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from demoscope.distill import (
    BagOfWords,
    KimCNN,
    WordVocabulary,
    load_student,
    make_student,
    positive_probability,
    save_student,
    tokenize,
)
from demoscope.errors import ConfigError, ModelError

TEXTS = ["The movie was GREAT, great fun!", "Great acting; the plot wasn't great.", "It's the end.", "zebra"]


def test_tokenizer_lowercases_and_keeps_apostrophes():
    assert tokenize("Don't STOP-me, 2 times!") == ["don't", "stop", "me", "times"]


def test_vocabulary_unk_is_zero_and_words_are_by_frequency():
    vocab = WordVocabulary.build(TEXTS, size=100)
    # great x4, the x3; then ties at one occurrence in first-seen order.
    assert vocab.words[:4] == ["<unk>", "great", "the", "movie"]
    assert vocab.words[4:] == ["was", "fun", "acting", "plot", "wasn't", "it's", "end", "zebra"]
    capped = WordVocabulary.build(TEXTS, size=3)
    assert capped.words == ["<unk>", "great", "the"] and len(capped) == 3
    assert capped.ids("The zebra was great") == [2, 0, 0, 1]


def test_encode_truncates_and_right_pads_with_zero():
    vocab = WordVocabulary.build(TEXTS, size=100)
    batch = vocab.encode(["great great the movie was", "zebra", ""], max_len=3)
    assert batch.dtype == torch.long
    assert batch.tolist() == [[1, 1, 2], [11, 0, 0], [0, 0, 0]]
    assert vocab.encode(["zebra", "the"], max_len=300).shape == (2, 1)  # padded to the longest in the call
    assert vocab.encode([""], max_len=5).shape == (1, 1)  # an empty text still has one (pad) position


def test_vocabulary_json_round_trip(tmp_path):
    vocab = WordVocabulary.build(TEXTS, size=6)
    loaded = WordVocabulary.load(vocab.save(tmp_path / "vocab.json"))
    assert loaded.words == vocab.words
    with pytest.raises(ConfigError):
        WordVocabulary(["great", "<unk>"])


def test_bow_mean_counts_the_pads():
    torch.manual_seed(0)
    bow = BagOfWords(vocab_size=5, dim=4)
    ids = torch.tensor([[3, 4, 0, 0]])
    expected = bow.linear(bow.embed.weight[[3, 4, 0, 0]].mean(dim=0, keepdim=True))
    torch.testing.assert_close(bow(ids), expected)
    # Dropping the pads changes the score: they are part of the mean.
    assert not torch.allclose(bow(ids), bow(ids[:, :2]))


def test_kim_cnn_shapes_and_kernels():
    cnn = KimCNN(vocab_size=50)
    assert [c.kernel_size[0] for c in cnn.convs] == [4, 5, 6]
    assert all(c.in_channels == 100 and c.out_channels == 100 for c in cnn.convs)
    assert cnn.fc.in_features == 300 and cnn.dropout.p == 0.5
    cnn.eval()
    assert cnn(torch.randint(0, 50, (7, 40))).shape == (7, 2)
    # Shorter than the widest kernel (an EEC sentence of 3 words): padded, not an error.
    assert cnn(torch.tensor([[5, 6, 7]])).shape == (1, 2)
    other = KimCNN(vocab_size=50, dim=8, filters=3, kernel_sizes=(2, 3), dropout=0.0)
    assert other.fc.in_features == 6 and other(torch.randint(0, 50, (2, 9))).shape == (2, 2)


def test_tiny_classifier_loads_with_auto_classes(classifier_dir):
    model = AutoModelForSequenceClassification.from_pretrained(classifier_dir)
    tok = AutoTokenizer.from_pretrained(classifier_dir)
    assert model.config.model_type == "bert" and model.config.num_labels == 2
    assert (model.config.hidden_size, model.config.num_hidden_layers, model.config.num_attention_heads) == (32, 2, 2)
    assert tok.convert_ids_to_tokens(tok("Alonzo feels angry.")["input_ids"]) == [
        "[CLS]", "alonzo", "feels", "angry", ".", "[SEP]"]
    assert any(p.name == "model.safetensors" for p in classifier_dir.iterdir())


@pytest.mark.parametrize("kind", ["bow", "cnn", "hf"])
def test_every_student_kind_has_the_same_interface(kind, classifier_dir):
    if kind == "hf":
        student = make_student("hf", model_path=classifier_dir)
    else:
        student = make_student(kind, texts=TEXTS, vocab_size=50, seed=0)
    batch = student.encode(TEXTS)
    assert all(isinstance(v, torch.Tensor) for v in batch.values())
    student.module.eval()
    logits = student.module(**batch)
    assert logits.shape == (len(TEXTS), 2)
    p = positive_probability(student, TEXTS, batch_size=len(TEXTS))
    np.testing.assert_allclose(p, torch.softmax(logits.double(), -1)[:, 1].detach().numpy(), atol=1e-6)
    assert ((p > 0) & (p < 1)).all()


def test_students_are_seeded_and_round_trip(tmp_path, classifier_dir):
    a = make_student("cnn", texts=TEXTS, seed=1, filters=8)
    b = make_student("cnn", texts=TEXTS, seed=1, filters=8)
    c = make_student("cnn", texts=TEXTS, seed=2, filters=8)
    assert torch.equal(a.module.embed.weight, b.module.embed.weight)
    assert not torch.equal(a.module.embed.weight, c.module.embed.weight)
    for student in (a, make_student("hf", model_path=classifier_dir)):
        loaded = load_student(save_student(student, tmp_path / student.kind))
        assert loaded.kind == student.kind and loaded.config == student.config
        np.testing.assert_allclose(positive_probability(loaded, TEXTS), positive_probability(student, TEXTS), atol=1e-6)


def test_student_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="unknown student kind"):
        make_student("lstm", texts=TEXTS)
    with pytest.raises(ConfigError, match="vocabulary or texts"):
        make_student("bow")
    with pytest.raises(ConfigError, match="model_path"):
        make_student("hf")
    with pytest.raises(ModelError):
        load_student(tmp_path)
