"""The demo's per-model settings: tiny models use everything, a real model samples whole questions and says so."""

import pandas as pd
import pytest
from rich.console import Console

from demoscope.pipelines import demo
from demoscope.pipelines.demo import DemoConfig


@pytest.fixture
def splits(tmp_path):
    for name, questions in (("train", 40), ("val", 10), ("test", 20)):
        frame = pd.DataFrame([{"qkey": f"{name}{q}", "group": f"g{g}"} for q in range(questions) for g in range(22)])
        frame.to_parquet(tmp_path / f"opnqa_QA_{name}.parquet")
    return {name: tmp_path / f"opnqa_QA_{name}.parquet" for name in ("train", "val", "test")}


def sizes(splits) -> dict[str, int]:
    return {name: len(pd.read_parquet(path)) for name, path in splits.items()}


def test_tiny_models_use_every_row_and_the_tiny_preset(splits, tmp_path):
    config = DemoConfig(out=str(tmp_path))
    assert demo._sample_splits(config, splits, tmp_path / "sampled", Console()) == splits
    train = demo._train_config(config, splits, tmp_path)
    assert train.lr == 3e-3 and train.epochs == 4 and train.model == "tiny:llama"


def test_a_real_model_samples_whole_questions_and_says_so(splits, tmp_path, capsys):
    config = DemoConfig(out=str(tmp_path), model="smollm2:135m")
    sampled = demo._sample_splits(config, splits, tmp_path / "sampled", Console(file=None, width=300))
    got = sizes(sampled)
    assert got == {"train": 22 * (320 // 22), "val": 22 * (80 // 22), "test": 22 * (200 // 22)}
    for name in ("train", "val", "test"):
        frame = pd.read_parquet(sampled[name])
        assert (frame.groupby("qkey").size() == 22).all()  # questions kept whole
    assert "sampling train: 308 of 880 rows" in capsys.readouterr().out
    train = demo._train_config(config, sampled, tmp_path)
    assert train.lr == 1e-3 and train.epochs == 2 and train.train_file == str(sampled["train"])


def test_flags_override_the_caps_and_the_epochs(splits, tmp_path):
    config = DemoConfig(out=str(tmp_path), model="smollm2:135m", max_train_rows=0, max_test_rows=44, epochs=1)
    got = sizes(demo._sample_splits(config, splits, tmp_path / "sampled", Console()))
    assert got == {"train": 880, "val": 220, "test": 44}
    assert demo._train_config(config, splits, tmp_path).epochs == 1
