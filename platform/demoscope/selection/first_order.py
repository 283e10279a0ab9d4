"""First-order estimate of fine-tuning on a subset of sources (GradEx §C.1 steps 3-5).

Around the meta-trained adapter theta*, ``f_{theta*+Delta}(i) ~ f_{theta*}(i) + g_i^T Delta``.
For a subset ``S`` of sources the reference

1. solves an L2 logistic regression on the projected gradients ``z_i`` of
   the samples of ``S`` with the *sign trick* (:func:`fit_logistic`);
2. maps the solution back to LoRA space, ``Delta = P w``, blockwise;
3. rescales ``Delta`` to ``scale * ||theta*_LoRA||`` (optional);
4. loads ``theta* + Delta`` into the adapter (a copy of theta* is kept) and
   measures per-source validation loss.

:func:`approximation_error` is the reference's check of the linearisation
against the actually perturbed model. :class:`FirstOrderEstimator` bundles it
all behind ``estimator(subset) -> mean validation loss`` for the search.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from demoscope.errors import ConfigError
from demoscope.selection.gradients import ClampMode, gradient_parameter_names, sample_outputs
from demoscope.selection.projection import RademacherProjection

MEAN_KEY = "mean"
LOSS_WEIGHTINGS = ("sample", "token")  # how validation losses are averaged: per sample (the reference) or per token


@dataclass(frozen=True)
class FirstOrderSettings:
    """Regression and rescaling knobs; defaults are the instruction scripts'.

    ``C`` is sklearn/liblinear's inverse regularisation (1e-4 in the
    instruction scripts, 6e-2 in the toy notebook, 2e-6 for Llama-3.1-8B);
    ``scale`` rescales ``||Delta||`` to ``scale * ||theta*_LoRA||`` (0.02
    default, 0.4 CoT) and ``None`` turns rescaling off (the toy notebook).
    ``positive_rate`` is the Bernoulli rate of the sign-trick labels.
    ``loss_weighting`` is how validation losses are averaged (see
    :func:`per_source_loss`): ``"sample"`` as the reference, ``"token"``.
    """

    C: float = 1e-4
    scale: float | None = 0.02
    positive_rate: float = 0.7
    fit_intercept: bool = True
    seed: int = 0
    loss_weighting: str = "sample"

    def __post_init__(self):
        if self.C <= 0:
            raise ConfigError(f"C must be positive, got {self.C}")
        if self.scale is not None and self.scale < 0:
            raise ConfigError(f"scale must be >= 0 or None, got {self.scale}")
        if not 0 < self.positive_rate < 1:
            raise ConfigError(f"positive_rate must be in (0, 1), got {self.positive_rate}")
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise ConfigError(f"loss_weighting must be one of {LOSS_WEIGHTINGS}, got {self.loss_weighting!r}")


@dataclass(frozen=True)
class LogisticFit:
    """``coef`` ``[d]``, ``intercept``, and the sign-trick labels ``y`` (0/1) it was fitted on."""

    coef: np.ndarray
    intercept: float
    labels: np.ndarray


def fit_logistic(
    z: np.ndarray, C: float = 1e-4, positive_rate: float = 0.7, seed: int = 0, fit_intercept: bool = True,
) -> LogisticFit:
    """The reference's regression: ``LogisticRegression(penalty='l2', C, solver='liblinear')`` on sign-flipped ``z``.

    Labels ``y_i ~ Bernoulli(positive_rate)``, signs ``s_i = 2 y_i - 1``,
    features ``x_i = s_i z_i``. We solve liblinear's primal exactly (scikit-learn
    is not a dependency): ``min 1/2 (||w||^2 + b^2) + C sum_i log(1 + exp(-s_i (w^T x_i + b)))``;
    liblinear regularises its intercept like a weight (``intercept_scaling=1``),
    so ``b`` is penalised too. Since ``s_i x_i = z_i``, without an intercept the
    labels drop out and this is ``min ||w||^2/(2C) + sum_i log(1 + exp(-w^T z_i))``:
    the direction that raises every sample's linearised log-odds. With the
    intercept (the reference's default), ``b`` sees the signs and ``w`` varies a little with ``seed``.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] == 0:
        raise ValueError(f"need a non-empty [n, d] gradient matrix, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError("projected gradients contain NaN/inf (the 'toy' clamp gives NaN for p < 1e-3; "
                         "recompute with clamp='instruction' or drop those samples)")
    rng = np.random.default_rng(seed)
    y = rng.binomial(1, positive_rate, size=z.shape[0])
    s = np.where(y == 1, 1.0, -1.0)
    x = z * s[:, None]  # the sign trick
    # A constant feature of 1 carries the intercept, as liblinear does.
    features = np.hstack([x, np.ones((x.shape[0], 1))]) if fit_intercept else x
    w = _newton_l2_logistic(features * s[:, None], C)  # rows t_i x_i, with t_i = s_i the +-1 label
    coef, intercept = (w[:-1], float(w[-1])) if fit_intercept else (w, 0.0)
    return LogisticFit(coef=coef, intercept=intercept, labels=y)


def _newton_l2_logistic(rows: np.ndarray, C: float, tol: float = 1e-10, max_iter: int = 100) -> np.ndarray:
    """``argmin_w 1/2 ||w||^2 + C sum_i log(1 + exp(-rows_i . w))`` by Newton's method with backtracking.

    Strictly convex with Hessian ``I + C sum_i sig_i (1 - sig_i) rows_i rows_i^T``
    (``d x d``, small: ``d`` is the projection dimension), so a few Newton
    steps reach machine precision; liblinear's trust-region Newton solves
    the same problem to its looser default tolerance. In float64 torch
    rather than NumPy/SciPy: on a busy CPU, OpenBLAS's thread pool and
    torch's fight each other and a 200 x 200 Cholesky then takes 100x longer.
    """
    X = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float64))

    def objective(w: torch.Tensor) -> float:
        margins = X @ w
        return float(0.5 * w @ w + C * torch.logaddexp(torch.zeros_like(margins), -margins).sum())

    w = torch.zeros(X.shape[1], dtype=torch.float64)
    value = objective(w)
    start = None
    for _ in range(max_iter):
        margins = X @ w
        gradient = w - X.T @ (C * torch.sigmoid(-margins))
        norm = float(torch.linalg.vector_norm(gradient))
        # Relative to the first gradient: with a small C the whole solution is tiny.
        start = norm if start is None else start
        if start == 0 or norm <= tol * start:
            break
        curvature = C * torch.sigmoid(margins) * torch.sigmoid(-margins)
        hessian = torch.eye(w.numel(), dtype=torch.float64) + (X * curvature[:, None]).T @ X
        step = torch.cholesky_solve(gradient[:, None], torch.linalg.cholesky(hessian))[:, 0]
        t, decrease = 1.0, float(gradient @ step)
        while True:
            candidate = w - t * step
            new_value = objective(candidate)
            if new_value <= value - 1e-4 * t * decrease or t < 1e-10:
                break
            t *= 0.5
        if new_value >= value:  # no progress left at float64 precision
            break
        w, value = candidate, new_value
    return w.numpy()


@dataclass(frozen=True)
class SubsetDelta:
    """A subset's step in LoRA space: ``delta = P @ coef`` (``coef`` already includes the rescaling).

    ``raw_norm`` is ``||P w||`` before rescaling and ``factor`` the rescaling
    applied (1.0 without). ``z @ coef`` is the first-order term ``g^T delta``
    exactly, because ``g^T P w = z^T w``.
    """

    coef: np.ndarray
    delta: np.ndarray
    raw_norm: float
    factor: float


def solve_delta(z: np.ndarray, projection: RademacherProjection, settings: FirstOrderSettings,
                theta_norm: float | None = None, seed: int | None = None) -> SubsetDelta:
    """Regression in projected space, back-projection (``P w``, blockwise) and norm rescaling."""
    fit = fit_logistic(z, settings.C, settings.positive_rate, settings.seed if seed is None else seed,
                       settings.fit_intercept)
    delta = projection.back_project(fit.coef)
    raw_norm = float(np.linalg.norm(delta.astype(np.float64)))
    factor = 1.0
    if settings.scale is not None:
        if theta_norm is None:
            raise ConfigError("norm rescaling needs theta_norm (||theta*_LoRA||); pass scale=None to skip it")
        factor = settings.scale * theta_norm / raw_norm if raw_norm > 0 else 0.0
    return SubsetDelta(coef=fit.coef * factor, delta=(delta * factor).astype(np.float32), raw_norm=raw_norm,
                       factor=factor)


# -- the adapter --------------------------------------------------------------------

def lora_norm(model: torch.nn.Module) -> float:
    """``||theta*_LoRA||_2`` over state-dict entries whose name contains ``"lora"``
    (the reference's ``compute_norm``).
    """
    total = sum(float(v.detach().double().square().sum()) for k, v in model.state_dict().items() if "lora" in k)
    return float(np.sqrt(total))


def snapshot(model: torch.nn.Module, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """A copy of the named parameters (theta*), to perturb from and restore to."""
    params = dict(model.named_parameters())
    return {n: params[n].detach().clone() for n in names}


@torch.no_grad()
def load_delta(model: torch.nn.Module, base: Mapping[str, torch.Tensor],
               delta: np.ndarray | torch.Tensor | None) -> None:
    """Set each parameter in ``base`` to ``base + delta[slice]`` (slices in ``base``'s order);
    ``None`` restores theta*.
    """
    params = dict(model.named_parameters())
    sizes = [base[n].numel() for n in base]
    if delta is not None and len(delta) != sum(sizes):
        raise ValueError(f"delta has {len(delta)} entries, the adapter tensors {sum(sizes)}")
    offset = 0
    for name, size in zip(base, sizes):
        value = base[name]
        if delta is not None:
            part = delta[offset: offset + size]
            part = part if torch.is_tensor(part) else torch.from_numpy(np.ascontiguousarray(part))
            value = value + part.to(value.device, value.dtype).view_as(value)
        params[name].copy_(value)
        offset += size


@contextmanager
def perturbed(model: torch.nn.Module, base: Mapping[str, torch.Tensor], delta):
    """``theta* + delta`` loaded inside the block; theta* (from ``base``) restored on exit, even on error."""
    load_delta(model, base, delta)
    try:
        yield model
    finally:
        load_delta(model, base, None)


@torch.no_grad()
def sample_token_losses(model: torch.nn.Module,
                        batches: Iterable[Mapping[str, torch.Tensor]]) -> tuple[np.ndarray, np.ndarray]:
    """Per sample of ``batches``: the summed next-token cross-entropy of its labelled tokens, and their number."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    sums, counts = [], []
    try:
        for batch in batches:
            kwargs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask") if k in batch}
            logits = model(**kwargs).logits[:, :-1].float()
            labels = batch["labels"][:, 1:].to(device)
            loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100,
                                                     reduction="none")
            sums.append(loss.sum(1).double().cpu().numpy())
            counts.append((labels != -100).sum(1).cpu().numpy())
    finally:
        model.train(was_training)
    sums, counts = (np.concatenate(x) if x else np.zeros(0) for x in (sums, counts))
    if counts.sum() == 0:
        raise ValueError("validation batches have no labelled tokens")
    return sums, counts


def validation_loss(model: torch.nn.Module, batches: Iterable[Mapping[str, torch.Tensor]],
                    weighting: str = "token") -> float:
    """Next-token cross-entropy over the labelled tokens of ``batches``.

    ``weighting="token"``: averaged over all labelled tokens (long samples
    weigh more); ``"sample"``: each sample's own token mean, averaged over
    samples, as the GradEx reference does. Samples without labelled tokens
    are left out.
    """
    sums, counts = sample_token_losses(model, batches)
    if weighting == "token":
        return float(sums.sum() / counts.sum())
    if weighting == "sample":
        return float(np.mean(sums[counts > 0] / counts[counts > 0]))
    raise ConfigError(f"loss weighting must be one of {LOSS_WEIGHTINGS}, got {weighting!r}")


def per_source_loss(model: torch.nn.Module, val_batches: Mapping[str, Sequence[Mapping[str, torch.Tensor]]],
                    weighting: str = "sample") -> dict[str, float]:
    """Validation loss per validation source plus an overall ``"mean"``.

    ``weighting="sample"`` (the reference's per-skill losses, for replication):
    per source the mean of its samples' token-mean losses, overall the mean
    over all samples of every source. ``"token"``: per source the token
    average, overall the unweighted mean of the sources.
    """
    if MEAN_KEY in val_batches:
        raise ConfigError(f"a validation source may not be called {MEAN_KEY!r}")
    if weighting not in LOSS_WEIGHTINGS:
        raise ConfigError(f"loss weighting must be one of {LOSS_WEIGHTINGS}, got {weighting!r}")
    per_sample, losses = [], {}
    for name, batches in val_batches.items():
        sums, counts = sample_token_losses(model, batches)
        if weighting == "token":
            losses[name] = float(sums.sum() / counts.sum())
        else:
            means = sums[counts > 0] / counts[counts > 0]
            losses[name] = float(means.mean())
            per_sample.append(means)
    losses[MEAN_KEY] = (float(np.mean(list(losses.values()))) if weighting == "token"
                        else float(np.concatenate(per_sample).mean()))
    return losses


# -- the approximation-error check ------------------------------------------------------

@dataclass(frozen=True)
class ApproximationError:
    """The reference's "Mean Difference": ``mean(err_i^2)`` with and without the gradient term.

    The mean squares are the reference's; one sample whose probability
    crosses a clamp threshold (a jump of ~2.4 in log-odds) can dominate them,
    so the medians and the share of samples the gradient term brings closer
    are kept too.
    """

    mean_squared_relative_error: float
    baseline_mean_squared_relative_error: float
    n_samples: int
    median_relative_error: float = float("nan")
    baseline_median_relative_error: float = float("nan")
    closer_share: float = float("nan")


def approximation_error(f0: np.ndarray, first_order_term: np.ndarray, f_delta: np.ndarray) -> ApproximationError:
    """``err_i = |f0_i + g_i.Delta - fD_i| / max(|fD_i|, |f0_i|)``; NaN entries dropped, as in the reference.

    The baseline is the same without ``g_i.Delta`` (how far the outputs
    moved at all); a useful linearisation has an error well below it.
    """
    f0, term, fd = (np.asarray(a, dtype=np.float64) for a in (f0, first_order_term, f_delta))
    if not f0.shape == term.shape == fd.shape:
        raise ValueError(f"shapes differ: f0 {f0.shape}, first-order term {term.shape}, perturbed {fd.shape}")
    denom = np.maximum(np.abs(fd), np.abs(f0))
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.abs(f0 + term - fd) / denom
        base = np.abs(f0 - fd) / denom
    keep = np.isfinite(err) & np.isfinite(base)  # both share the denominator: the same samples drop
    err, base = err[keep], base[keep]
    if not err.size:
        return ApproximationError(float("nan"), float("nan"), 0)
    return ApproximationError(float(np.mean(err**2)), float(np.mean(base**2)), int(err.size),
                              float(np.median(err)), float(np.median(base)), float(np.mean(err < base)))


def check_first_order(
    model: torch.nn.Module,
    base: Mapping[str, torch.Tensor],
    step: SubsetDelta,
    batches: Sequence[Mapping[str, torch.Tensor]],
    f0: np.ndarray,
    z: np.ndarray,
    clamp: ClampMode = "toy",
) -> ApproximationError:
    """First-order outputs ``f0 + z @ coef`` against the outputs of the model actually moved to ``theta* + delta``.

    ``f0`` and ``z`` are the stored outputs and projected gradients of the
    samples in ``batches`` (same order). ``z @ coef`` equals the reference's
    ``z pinv(P) . Delta`` because ``Delta = P coef``.
    """
    with perturbed(model, base, step.delta):
        f_delta = sample_outputs(model, batches, clamp)
    return approximation_error(f0, np.asarray(z, np.float64) @ step.coef.astype(np.float64), f_delta)


# -- one object for the search ------------------------------------------------------------

class FirstOrderEstimator:
    """``estimator(subset)``: the estimated mean validation loss after fine-tuning on ``subset`` (lower is better).

    Holds the meta-trained model (its adapter is perturbed and restored per
    call), the projection, the stored projected gradients per source and the
    validation batches per validation source. The sign-trick labels of a
    subset are seeded from ``settings.seed`` and the subset's members, so a
    subset gets the same estimate whichever worker or order evaluates it.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        projection: RademacherProjection,
        gradients: Mapping[str, np.ndarray],
        val_batches: Mapping[str, Sequence[Mapping[str, torch.Tensor]]],
        settings: FirstOrderSettings = FirstOrderSettings(),
        names: Sequence[str] | None = None,
    ):
        self.model = model
        self.projection = projection
        self.gradients = {str(k): np.asarray(v, np.float32) for k, v in gradients.items()}
        self.val_batches = val_batches
        self.settings = settings
        self.names = list(names or gradient_parameter_names(model))
        self.base = snapshot(model, self.names)
        self.theta_norm = lora_norm(model)
        dims = {v.shape[1] for v in self.gradients.values()}
        if dims != {projection.dim_out}:
            raise ConfigError(f"stored gradients have dims {sorted(dims)}, projection dim_out={projection.dim_out}")

    @property
    def sources(self) -> list[str]:
        """The training sources, in the order given."""
        return list(self.gradients)

    def _seed(self, members: Sequence[str]) -> int:
        key = "\x1f".join(sorted(members)).encode()
        return int(np.random.SeedSequence([self.settings.seed, zlib.crc32(key)]).generate_state(1)[0])

    def delta(self, subset: Iterable) -> SubsetDelta:
        """The rescaled first-order step for ``subset`` (source names)."""
        members = [str(s) for s in subset]
        unknown = [s for s in members if s not in self.gradients]
        if unknown or not members:
            raise ConfigError(f"subset must be a non-empty set of known sources; unknown: {unknown}")
        z = np.concatenate([self.gradients[s] for s in members])
        return solve_delta(z, self.projection, self.settings, self.theta_norm, seed=self._seed(members))

    def evaluate(self, subset: Iterable) -> dict[str, float]:
        """Per-validation-source loss (and ``"mean"``) with the adapter at ``theta* + Delta_S``."""
        step = self.delta(subset)
        with perturbed(self.model, self.base, step.delta):
            return per_source_loss(self.model, self.val_batches, self.settings.loss_weighting)

    def __call__(self, subset: Iterable) -> float:
        return self.evaluate(subset)[MEAN_KEY]
