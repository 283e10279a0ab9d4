"""The noisy-addition toy: the data format, then the whole pipeline end to end."""

import numpy as np

from demoscope.selection import storage
from demoscope.selection.toy import ToySettings, addition_steps, encode, make_example, run_toy


def test_addition_steps_match_the_notebook_example():
    # 6 7 0 1 3 + 2 3 9 2 4  ->  0 7 | 0 3 7 | 0 9 3 7 | 1 0 9 3 7 | 9 0 9 3 7
    steps, out = addition_steps([6, 7, 0, 1, 3], [2, 3, 9, 2, 4])
    assert steps == [[0, 7], [0, 3, 7], [0, 9, 3, 7], [1, 0, 9, 3, 7]]
    assert out == [9, 0, 9, 3, 7]
    _, carried = addition_steps([9, 9, 9, 9, 9], [1, 0, 0, 0, 1])
    assert carried == [1, 1, 0, 0, 0, 0]


def test_noisy_examples_keep_the_shape_and_prompt_tokens_are_unscored():
    rng = np.random.default_rng(0)
    prompt, answer = make_example(rng)
    a, b = prompt[:-1].split("+")
    assert int(answer.split("|")[-1]) == int(a) + int(b)
    noisy_prompt, noisy_answer = make_example(np.random.default_rng(0), noisy=True)
    assert noisy_prompt == prompt and [len(x) for x in noisy_answer.split("|")] == [len(x) for x in answer.split("|")]
    ids, labels = encode(prompt, answer)
    assert labels[: len(prompt)] == [-100] * len(prompt) and labels[len(prompt):] == ids[len(prompt):]


def test_toy_end_to_end_ranks_clean_sources_above_noisy_ones(tmp_path):
    settings = ToySettings()
    result = run_toy(settings, out_dir=tmp_path)
    clean = [s for s in result.scores if s not in result.noisy_sources]
    assert len(clean) == settings.clean_sources and len(result.noisy_sources) == settings.noisy_sources
    # Scores are estimated clean-validation losses: lower is better.
    assert np.mean([result.scores[s] for s in clean]) < np.mean([result.scores[s] for s in result.noisy_sources])
    assert result.separation() >= 0.9
    assert set(result.ranking[: settings.clean_sources // 2]) <= set(clean)
    # The linearisation holds at the error-check step size, far better than ignoring the gradient term.
    assert result.error.mean_squared_relative_error < 0.1 * result.error.baseline_mean_squared_relative_error
    # The gradients went through the shard store.
    assert storage.list_sources(tmp_path) == sorted(result.scores)
    assert storage.read_metadata(tmp_path)["projection"]["dim_out"] == settings.project_dim
