"""The first-order estimate: the sign-trick logistic regression, back-projection, rescaling, the adapter,
the error check.
"""

import math

import numpy as np
import pytest
import torch

from demoscope.errors import ConfigError
from demoscope.selection.first_order import (
    FirstOrderEstimator,
    FirstOrderSettings,
    approximation_error,
    check_first_order,
    fit_logistic,
    lora_norm,
    per_source_loss,
    perturbed,
    snapshot,
    solve_delta,
    validation_loss,
)
from demoscope.selection.gradients import (
    gradient_dim,
    gradient_parameter_names,
    per_sample_gradients_loop,
    projected_gradients,
)
from demoscope.selection.projection import RademacherProjection
from tests.selection.helpers import random_batch, tiny_lora_model


def _separable(n=40, d=20, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    z = u[None] * (1 + np.abs(rng.standard_normal((n, 1)))) + 0.2 * rng.standard_normal((n, d))
    return z, u


def test_logistic_regression_finds_the_common_direction_of_a_separable_set():
    z, u = _separable()
    fit = fit_logistic(z, C=1.0, seed=0)
    cosine = fit.coef @ u / np.linalg.norm(fit.coef)
    assert cosine > 0.95
    assert (z @ fit.coef > 0).all()  # every sample's linearised log-odds goes up
    assert set(np.unique(fit.labels)) == {0, 1} and 0.5 < fit.labels.mean() < 0.9  # Bernoulli(0.7)


def test_solution_is_the_liblinear_primal_optimum():
    from scipy.optimize import minimize

    z, _ = _separable(n=30, d=6, seed=1)
    C = 0.3
    fit = fit_logistic(z, C=C, seed=4)
    # Independently: liblinear's objective on (x = s z, labels s, intercept as a penalised constant feature).
    s = np.where(fit.labels == 1, 1.0, -1.0)
    x = np.hstack([z * s[:, None], np.ones((len(z), 1))])

    def objective(w):
        return 0.5 * w @ w + C * np.logaddexp(0, -s * (x @ w)).sum()

    best = minimize(objective, np.zeros(7), method="BFGS", options={"gtol": 1e-12}).x
    np.testing.assert_allclose(fit.coef, best[:-1], rtol=1e-4, atol=1e-8)
    assert fit.intercept == pytest.approx(best[-1], rel=1e-4, abs=1e-8)


def test_sign_trick_without_intercept_makes_the_labels_irrelevant():
    z, _ = _separable(seed=2)
    fits = [fit_logistic(z, C=0.5, seed=seed, fit_intercept=False) for seed in range(3)]
    assert not np.array_equal(fits[0].labels, fits[1].labels)
    for fit in fits[1:]:
        np.testing.assert_allclose(fit.coef, fits[0].coef, rtol=1e-9, atol=1e-12)
    # With the intercept (the reference's default) the labels matter, but only a little.
    a, b = (fit_logistic(z, C=0.5, seed=seed).coef for seed in (0, 1))
    assert not np.allclose(a, b) and a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.99


def test_one_dimensional_closed_form():
    # z = [[1], [1]], no intercept: w = 2 C sigmoid(-w), solved by bisection.
    C = 0.7
    lo, hi = 0.0, 2 * C
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid < 2 * C / (1 + math.exp(mid)) else (lo, mid)
    fit = fit_logistic(np.ones((2, 1)), C=C, fit_intercept=False)
    assert fit.coef[0] == pytest.approx(lo, rel=1e-9)


def test_nan_gradients_are_refused():
    z = np.ones((3, 2))
    z[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_logistic(z)


def test_delta_is_back_projected_and_rescaled_to_a_fraction_of_the_adapter_norm():
    projection = RademacherProjection(700, 8, seed=0)
    z, _ = _separable(n=25, d=8, seed=3)
    step = solve_delta(z, projection, FirstOrderSettings(C=1.0, scale=0.1), theta_norm=3.0)
    assert np.linalg.norm(step.delta) == pytest.approx(0.3, rel=1e-5)
    np.testing.assert_allclose(step.delta, projection.back_project(step.coef), rtol=1e-5, atol=1e-7)
    plain = solve_delta(z, projection, FirstOrderSettings(C=1.0, scale=None))
    assert plain.factor == 1.0 and np.linalg.norm(plain.delta) == pytest.approx(plain.raw_norm, rel=1e-5)
    np.testing.assert_allclose(step.delta, plain.delta * (0.3 / plain.raw_norm), rtol=1e-4, atol=1e-7)
    with pytest.raises(ConfigError, match="theta_norm"):
        solve_delta(z, projection, FirstOrderSettings(scale=0.1))


def test_delta_goes_into_the_adapter_in_gradient_order_and_is_undone():
    model = tiny_lora_model("gpt2")
    names = gradient_parameter_names(model)
    base = snapshot(model, names)
    delta = np.arange(gradient_dim(model), dtype=np.float32) * 1e-3
    params = dict(model.named_parameters())
    with pytest.raises(RuntimeError, match="boom"), perturbed(model, base, delta):
        offset = 0
        for name in names:
            size = params[name].numel()
            expected = base[name] + torch.from_numpy(delta[offset: offset + size]).view_as(base[name])
            torch.testing.assert_close(params[name].detach(), expected)
            offset += size
        raise RuntimeError("boom")
    for name in names:
        assert torch.equal(params[name].detach(), base[name])


def test_approximation_error_by_hand():
    result = approximation_error(np.array([1.0, 2.0, 0.0]), np.array([0.5, 0.0, 0.0]), np.array([1.5, 2.2, 0.0]))
    # The 0/0 sample is dropped, as the reference drops NaNs.
    assert result.n_samples == 2
    assert result.mean_squared_relative_error == pytest.approx((0.2 / 2.2) ** 2 / 2)
    assert result.baseline_mean_squared_relative_error == pytest.approx(((0.5 / 1.5) ** 2 + (0.2 / 2.2) ** 2) / 2)
    assert result.median_relative_error == pytest.approx((0 + 0.2 / 2.2) / 2)
    assert result.baseline_median_relative_error == pytest.approx((0.5 / 1.5 + 0.2 / 2.2) / 2)
    assert result.closer_share == 0.5  # the first sample is exact with the term; the second equally off either way


@pytest.fixture(scope="module")
def llama_setup():
    model = tiny_lora_model("llama", seed=1)
    batches = [random_batch(seed=0), random_batch(n=4, seed=1)]
    projection = RademacherProjection(gradient_dim(model), 64, seed=0)
    f0, z = projected_gradients(model, batches, projection, clamp="instruction")
    return model, batches, projection, f0, z


def test_first_order_error_is_small_for_a_small_step_and_grows_with_it(llama_setup):
    model, batches, projection, f0, z = llama_setup
    names = gradient_parameter_names(model)
    base = snapshot(model, names)
    errors = {}
    for scale in (1e-3, 3e-2):
        step = solve_delta(z, projection, FirstOrderSettings(C=1.0, scale=scale), theta_norm=lora_norm(model))
        errors[scale] = check_first_order(model, base, step, batches, f0, z, "instruction")
    small, large = errors[1e-3], errors[3e-2]
    assert small.n_samples == 9
    assert small.mean_squared_relative_error < 1e-6
    # The gradient term explains almost all of the change (second-order remainder only).
    assert small.mean_squared_relative_error < 1e-2 * small.baseline_mean_squared_relative_error
    assert large.mean_squared_relative_error > small.mean_squared_relative_error
    for name in names:  # theta* is back
        assert torch.equal(dict(model.named_parameters())[name].detach(), base[name])


def test_first_order_term_is_exactly_the_full_gradient_dot_delta(llama_setup):
    model, batches, projection, f0, z = llama_setup
    step = solve_delta(z, projection, FirstOrderSettings(C=1.0, scale=0.01), theta_norm=lora_norm(model))
    full = torch.cat([per_sample_gradients_loop(model, b, clamp="instruction").grads for b in batches]).double().numpy()
    np.testing.assert_allclose(z @ step.coef, full @ step.delta.astype(np.float64), rtol=1e-3, atol=1e-7)


def _plain_sample_losses(model, batch):
    """Each sample alone, unpadded: the mean cross-entropy of its labelled next tokens
    (the reference's per-sample loss).
    """
    losses, counts = [], []
    with torch.no_grad():
        for ids, mask, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"]):
            n = int(mask.sum())
            logits = model(input_ids=ids[None, :n]).logits[0, :-1]
            target = labels[1:n]
            keep = target != -100
            losses.append(float(torch.nn.functional.cross_entropy(logits[keep], target[keep])))
            counts.append(int(keep.sum()))
    return np.array(losses), np.array(counts)


def test_validation_losses_weigh_samples_as_the_reference_or_tokens():
    model = tiny_lora_model("llama", seed=3)
    val = {"a": [random_batch(seed=30)], "b": [random_batch(n=3, width=10, seed=31)]}
    plain = {k: _plain_sample_losses(model, v[0]) for k, v in val.items()}
    assert len(set(plain["a"][1])) > 1  # samples of different lengths: the two weightings differ
    by_sample = per_source_loss(model, val, "sample")
    by_token = per_source_loss(model, val, "token")
    for name, (losses, counts) in plain.items():
        assert by_sample[name] == pytest.approx(losses.mean(), rel=1e-5)
        assert by_token[name] == pytest.approx((losses * counts).sum() / counts.sum(), rel=1e-5)
        assert validation_loss(model, val[name], "sample") == pytest.approx(losses.mean(), rel=1e-5)
    assert by_sample["mean"] == pytest.approx(np.concatenate([plain["a"][0], plain["b"][0]]).mean(), rel=1e-5)
    assert by_token["mean"] == pytest.approx((by_token["a"] + by_token["b"]) / 2)
    assert by_sample["a"] != pytest.approx(by_token["a"], rel=1e-6)
    with pytest.raises(ConfigError, match="loss weighting"):
        per_source_loss(model, val, "tokens")


def test_estimator_is_deterministic_order_free_and_leaves_the_adapter_alone():
    model = tiny_lora_model("gpt2", seed=2)
    projection = RademacherProjection(gradient_dim(model), 32, seed=1)
    gradients = {f"s{i}": projected_gradients(model, [random_batch(seed=10 + i)], projection)[1] for i in range(3)}
    val = {"a": [random_batch(seed=20)], "b": [random_batch(n=3, seed=21)]}
    estimator = FirstOrderEstimator(model, projection, gradients, val, FirstOrderSettings(C=1.0, scale=0.2))
    before = {k: v.clone() for k, v in estimator.base.items()}
    first = estimator.evaluate(["s0", "s2"])
    assert set(first) == {"a", "b", "mean"} and first["mean"] == pytest.approx((5 * first["a"] + 3 * first["b"]) / 8)
    assert estimator.evaluate(("s2", "s0")) == first
    assert estimator(["s0", "s2"]) == first["mean"]
    assert estimator(["s1"]) != first["mean"]
    params = dict(model.named_parameters())
    for name, value in before.items():
        assert torch.equal(params[name].detach(), value)
    with pytest.raises(ConfigError, match="unknown"):
        estimator(["s0", "nope"])
