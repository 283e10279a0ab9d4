"""An offline tiny BERT sequence classifier standing in for DistilBERT (``reference`` D.5).

:func:`build_tiny_classifier` trains a lower-casing WordPiece tokenizer on
local texts, builds a seeded random 2-label ``BertForSequenceClassification``
and saves both with ``save_pretrained`` (safetensors), so the folder loads
through ``AutoModelForSequenceClassification`` / ``AutoTokenizer`` exactly as
``distilbert-base-uncased`` would, with nothing downloaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
ID2LABEL = {0: "NEGATIVE", 1: "POSITIVE"}


def default_corpus() -> list[str]:
    """Texts the students meet in tests and the demo: planted-bias reviews and the EEC sentences."""
    from demoscope.bias import generate_eec, synthetic_sentiment

    texts = [t for bias in ("race", "gender") for t in synthetic_sentiment(1000, seed=0, bias=bias)["text"]]
    return texts + generate_eec()["Sentence"].tolist()


def build_wordpiece_tokenizer(texts: Iterable[str], vocab_size: int = 2000, max_length: int = 128):
    """A BERT-style ``PreTrainedTokenizerFast``: lower-cased WordPiece, ``[CLS] text [SEP]``, ``[PAD]`` = 0."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token=UNK))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, UNK, CLS, SEP, MASK], show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}", pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=[(CLS, tok.token_to_id(CLS)), (SEP, tok.token_to_id(SEP))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token=UNK, pad_token=PAD, cls_token=CLS, sep_token=SEP, mask_token=MASK,
        model_max_length=max_length,
    )


def build_tiny_classifier(
    out_dir: str | Path,
    texts: Iterable[str] | None = None,
    vocab_size: int = 2000,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    max_length: int = 128,
    seed: int = 0,
) -> Path:
    """Write a tokenizer and a seeded random 2-label BERT classifier to ``out_dir``; returns ``out_dir``.

    ``texts`` train the tokenizer (default :func:`default_corpus`). The model
    is ``BertForSequenceClassification`` with ``hidden_size`` 32, 2 layers, 2
    heads and labels ``NEGATIVE``/``POSITIVE``; the same arguments give the
    same weights.
    """
    from transformers import BertConfig, BertForSequenceClassification

    out = Path(out_dir)
    tok = build_wordpiece_tokenizer(default_corpus() if texts is None else texts, vocab_size, max_length)
    config = BertConfig(
        vocab_size=len(tok), hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=num_heads,
        intermediate_size=2 * hidden_size, max_position_embeddings=max_length, num_labels=2,
        id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()}, pad_token_id=tok.pad_token_id,
    )
    # fork_rng: seeding must not disturb the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
