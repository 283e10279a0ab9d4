"""A small prepared opinion data set shared by the train and evaluate job tests."""

import pytest

from demoscope.surveys import AggregateInputs, aggregate_files, load_subpopulations
from demoscope.surveys.finetuning import prepare_splits
from demoscope.surveys.synthetic import generate_world


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """Train/val/test Parquet splits (QA steering) of a one-wave synthetic world, 12 questions."""
    root = tmp_path_factory.mktemp("prepared")
    world = generate_world(root / "world", waves=1, respondents=800, seed=11, gss=False, questions_per_wave=12)
    inputs = AggregateInputs.build(load_subpopulations("22"), codebook_path=str(world.codebook_path))
    distributions, _ = aggregate_files(world.files, inputs)
    splits = prepare_splits(distributions, "QA", ratios=(0.6, 0.2, 0.2), seed=1)
    paths = {}
    for name, frame in splits.items():
        paths[name] = root / f"opnqa_QA_{name}.parquet"
        frame.to_parquet(paths[name], index=False)
    return paths
