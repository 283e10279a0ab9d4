"""Temperature scaling: the rescaling rule, the fit, and cross-validated gains on held-out questions."""

import numpy as np
import pandas as pd
import pytest

from demoscope.metrics.calibration import cross_validated_calibration, fit_temperature, temperature_scale


def test_temperature_rescales_in_log_space():
    q = np.array([0.5, 0.3, 0.2, 0.0])
    np.testing.assert_allclose(temperature_scale(q, 1.0), q)
    sharper = q[:3] ** 2 / (q[:3] ** 2).sum()
    np.testing.assert_allclose(temperature_scale(q, 0.5), [*sharper, 0.0])
    assert temperature_scale(q, 100.0)[:3] == pytest.approx([1 / 3] * 3, abs=0.01)  # hot: flat over the support


def world(seed: int, true_temperature: dict[str, float], questions: int = 24) -> pd.DataFrame:
    """Humans answer; each group's model is the human distribution at a known temperature (too sharp or too flat)."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(questions):
        for group, temperature in true_temperature.items():
            human = rng.dirichlet(np.full(4, 2.0))
            rows.append({"qkey": f"q{q}", "attribute": "PARTY", "group": group, "human": human,
                         "ordinal": [1.0, 2.0, 3.0, 4.0], "model": temperature_scale(human, temperature)})
    return pd.DataFrame(rows)


def test_fit_recovers_the_temperature_that_undoes_the_distortion():
    frame = world(0, {"A": 0.25})
    fitted = fit_temperature(list(frame["model"]), list(frame["human"]), list(frame["ordinal"]), "tv")
    assert fitted == pytest.approx(4.0, rel=0.01)


def test_cross_validation_lowers_held_out_distance_per_group():
    frame = world(1, {"A": 0.3, "B": 3.0})  # group A too sharp, group B too flat: one global T cannot fix both
    per_group = cross_validated_calibration(frame, "model", k=4, metric="wd", seed=0)
    assert (per_group["after"] < per_group["before"] - 1e-6).mean() > 0.95
    assert per_group.groupby("group")["temperature"].mean().to_dict() == pytest.approx({"A": 1 / 0.3, "B": 1 / 3.0},
                                                                                         rel=0.05)
    global_ = cross_validated_calibration(frame, "model", k=4, metric="wd", by=(), seed=0)
    assert per_group["after"].mean() < global_["after"].mean()
    with pytest.raises(ValueError, match="1 <= k < 24"):
        cross_validated_calibration(frame, "model", k=24)


def test_on_the_synthetic_world_an_overconfident_model_is_closer_after_calibration(tmp_path):
    """Humans: the aggregated survey estimates; the model: the true population shares at T=0.4 (too sure)."""
    from demoscope.metrics.bootstrap import paired_bootstrap_ci
    from demoscope.metrics.opinion import human_distribution
    from demoscope.surveys import AggregateInputs, aggregate_files, load_subpopulations
    from demoscope.surveys.synthetic import generate_world

    world = generate_world(tmp_path, waves=1, respondents=800, seed=5, gss=False, questions_per_wave=10)
    estimates, _ = aggregate_files(world.files, AggregateInputs.build(load_subpopulations("22"),
                                                                      codebook_path=str(world.codebook_path)))
    truth = world.truth.set_index(["qkey", "attribute", "group"])["responses"]
    frame = estimates.assign(
        human=[human_distribution([*r, f], o) for r, f, o in zip(estimates.responses, estimates.refusal_rate,
                                                                  estimates.ordinal)],
        model=[temperature_scale(np.asarray(truth[key], dtype=float), 0.4)
               for key in estimates[["qkey", "attribute", "group"]].itertuples(index=False, name=None)])
    result = cross_validated_calibration(frame, "model", k=3, metric="wd", seed=0)
    paired = paired_bootstrap_ci(result["before"].to_numpy(float), result["after"].to_numpy(float),
                                 clusters=result["qkey"].to_numpy(), n_boot=300, seed=0)
    assert paired["low"] > 0  # calibrated answers are closer on held-out questions, and the interval says so
    assert result["temperature"].median() == pytest.approx(1 / 0.4, rel=0.3)
