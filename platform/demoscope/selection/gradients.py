"""Per-sample outputs and gradients at the meta-trained adapter (GradEx §C.1 step 2).

For sample ``i`` with target tokens ``t`` (labels != -100, shifted by one as
in causal-LM training) the *output* is the mean token log-odds

    p_t = softmax(logits)[t, y_t],   f_i = mean_t log(p_t' / (1 - p_t')),

with the reference's clamping of ``p`` (:func:`clamped_log_odds`), and the
*gradient* is ``g_i = df_i / dtheta`` over the adapter's trainable tensors
whose names contain none of :data:`EXCLUDED_NAME_PARTS`, flattened in
``named_parameters`` order (the same order :mod:`.first_order` uses to map a
solution back into the adapter).

:func:`per_sample_gradients` computes a whole batch at once with
``torch.func`` (``functional_call`` + ``vmap(grad(...))``);
:func:`per_sample_gradients_loop` is the deliberately plain one-autograd-call
per sample version, the benchmark baseline and the tests' oracle.

Batches are dicts with ``input_ids`` ``[B, T]`` and ``labels`` ``[B, T]``
(HF convention: ``labels[t]`` is the token at ``t``, -100 where not scored)
and optionally ``attention_mask`` (without one, every position is attended,
which is exact for right padding under causal attention). Both paths run the
model with eager attention in eval mode, restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from demoscope.errors import ConfigError
from demoscope.selection.projection import RademacherProjection

# Substrings of parameter names the reference never differentiates (AlpacaModel.removing_keys + layer_norm).
EXCLUDED_NAME_PARTS = ("shared", "lm_head", "wte", "wpe", "ln", "layer_norm", "embed_tokens", "norm", "word_embeddings")

ClampMode = Literal["toy", "instruction"]
CLAMP_MODES = ("toy", "instruction")


@dataclass(frozen=True)
class SampleGradients:
    """One batch: ``outputs`` ``[B]`` (f_i at theta*) and flat ``grads`` ``[B, D]``."""

    outputs: torch.Tensor
    grads: torch.Tensor


def clamped_log_odds(p: torch.Tensor, mode: ClampMode = "toy") -> torch.Tensor:
    """Log-odds of target-token probabilities with the reference's clamping.

    ``"toy"`` (the CoT scripts and the addition toy): ``p <- p - 1e-3``, then
    ``log(p / (1 - p + 1e-10))``; a probability below 1e-3 gives NaN there, as
    in the reference. ``"instruction"`` (``AlpacaModel``): ``p > 0.9 -> p - 0.01``,
    then ``p < 0.001 -> p + 0.01``, then ``log(p / (1 - p))``; always finite.
    The shifts are constants, so gradients pass straight through them.
    """
    if mode == "toy":
        q = p - 1e-3
        return torch.log(q / (1 - q + 1e-10))
    if mode == "instruction":
        # Two steps in this order, as the reference's in-place updates do.
        q = torch.where(p > 0.9, p - 1e-2, p)
        q = torch.where(q < 1e-3, q + 1e-2, q)
        return torch.log(q / (1 - q))
    raise ConfigError(f"unknown clamp mode {mode!r}; expected one of {CLAMP_MODES}")


def mean_log_odds(logits: torch.Tensor, labels: torch.Tensor, mode: ClampMode = "toy") -> torch.Tensor:
    """``f`` per row: mean clamped log-odds of the target tokens. ``logits [B, T, V]``, ``labels [B, T]`` -> ``[B]``.

    Masked (not boolean-indexed) so that it runs under ``vmap``; masked
    positions get a harmless stand-in probability before the log, so they
    contribute neither NaN values nor gradients.
    """
    return target_log_odds(logits[..., :-1, :], labels[..., 1:], mode)


def target_log_odds(logits: torch.Tensor, targets: torch.Tensor, mode: ClampMode = "toy") -> torch.Tensor:
    """:func:`mean_log_odds` with the shift done: ``logits[..., t, :]`` predicts ``targets[..., t]`` (-100: none)."""
    mask = targets != -100
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    p = torch.where(mask, logp.exp(), torch.full_like(logp, 0.5))
    odds = torch.where(mask, clamped_log_odds(p, mode), torch.zeros_like(p))
    return odds.sum(-1) / mask.sum(-1)


def target_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the logit positions that predict a target token, and those tokens: ``[B, K]`` each.

    ``K`` is the widest row's target count; shorter rows are padded with
    position 0 and target -100. Only these positions need the vocabulary
    projection: a survey row scores one answer letter out of ~200 tokens.
    """
    shifted = labels[:, 1:]
    mask = shifted != -100
    width = int(mask.sum(1).max())
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :width]  # target positions first, in order
    valid = torch.gather(mask, 1, order)
    return torch.where(valid, order, 0), torch.where(valid, torch.gather(shifted, 1, order), -100)


def _keeps_logits(model: torch.nn.Module) -> bool:
    """Whether the model's forward can project only chosen positions (transformers' ``logits_to_keep``)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def gradient_parameter_names(model: torch.nn.Module) -> list[str]:
    """Trainable parameters the gradients cover, in ``named_parameters`` order (the flattening order)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad and not any(k in n for k in EXCLUDED_NAME_PARTS)]
    if not names:
        raise ConfigError("model has no trainable parameters outside the excluded names; attach a LoRA adapter first")
    return names


def gradient_dim(model: torch.nn.Module, names: Sequence[str] | None = None) -> int:
    """``D``: the number of entries in one flattened gradient."""
    params = dict(model.named_parameters())
    return sum(params[n].numel() for n in (names or gradient_parameter_names(model)))


def _check_batch(batch: Mapping[str, torch.Tensor]) -> None:
    labels = batch["labels"]
    empty = ((labels[:, 1:] != -100).sum(-1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"samples {empty} of the batch have no target tokens (labels all -100 after the shift)")


@contextmanager
def _eval_mode(model: torch.nn.Module):
    """Eval mode (no LoRA dropout) and eager attention, both restored after.

    Eager because SDPA has no vmap batching rule on CPU (a slow per-sample
    fallback), and the same in every path so that they compute the same numbers.
    """
    was_training = model.training
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    previous = getattr(config, "_attn_implementation", None)
    switch = previous not in (None, "eager") and hasattr(base, "set_attn_implementation")
    model.eval()
    if switch:
        base.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            base.set_attn_implementation(previous)
        model.train(was_training)


def _to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "labels", "attention_mask")}


# Activation memory one vmap chunk may take; a real model's samples cost hundreds of MB each.
VMAP_MEMORY_BYTES = 2 * 2**30


def vmap_chunk_size(model: torch.nn.Module, seq_len: int, budget_bytes: int = VMAP_MEMORY_BYTES) -> int | None:
    """How many samples of length ``seq_len`` to differentiate at once within ``budget_bytes`` of activations.

    The estimate is the activation memory a transformer layer keeps for its
    backward pass, 34 h + 5 a s values per token in 16-bit (Korthikanti et
    al., 2022, "Reducing Activation Recomputation in Large Transformer
    Models", arXiv:2205.05198, §4.1), doubled for float32, times the layers.
    SmolLM2-135M at 250 tokens: ~460 MB per sample, 4 per chunk; the tiny
    models fit hundreds. ``None`` (no chunking) when the model has no such
    config or the whole batch fits.
    """
    config = getattr(model, "config", None)
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None)
    if not (layers and hidden and heads):
        return None
    per_sample = 2 * layers * seq_len * (34 * hidden + 5 * heads * seq_len)
    return max(1, int(budget_bytes // per_sample))


def per_sample_gradients(
    model: torch.nn.Module,
    batch: Mapping[str, torch.Tensor],
    names: Sequence[str] | None = None,
    clamp: ClampMode = "toy",
    chunk_size: int | None = None,
) -> SampleGradients:
    """Outputs ``f_i`` and flat gradients ``g_i`` for every sample of ``batch``, batched with ``torch.func``.

    ``vmap(grad(f))`` over the samples, with the adapter's tensors passed to
    ``functional_call``; ``chunk_size`` bounds how many samples are
    differentiated at once (memory; default: :func:`vmap_chunk_size` for
    this batch's length, so a real model's batch does not exhaust the node).
    """
    from torch.func import functional_call, grad, vmap

    _check_batch(batch)
    names = list(names or gradient_parameter_names(model))
    all_params = dict(model.named_parameters())
    params = {n: all_params[n].detach() for n in names}
    device = next(iter(params.values())).device
    data = _to_device(batch, device)

    # Always pass a mask: without one, transformers peeks at the ids for padding (data-dependent, not vmappable).
    mask = data.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(data["input_ids"])

    # Only the positions that predict a target matter: project just those onto the vocabulary when the model can.
    keep = _keeps_logits(model)
    positions, targets = target_positions(data["labels"])

    def output(p: dict[str, torch.Tensor], input_ids: torch.Tensor, attention_mask: torch.Tensor,
               positions: torch.Tensor, targets: torch.Tensor):
        kwargs = {"input_ids": input_ids[None], "attention_mask": attention_mask[None]}
        if keep:
            kwargs["logits_to_keep"] = positions
        logits = functional_call(model, p, args=(), kwargs=kwargs).logits
        f = target_log_odds(logits if keep else logits[:, positions], targets[None], clamp)[0]
        return f, f.detach()

    if chunk_size is None:
        chunk = vmap_chunk_size(model, int(data["input_ids"].shape[1]))
        chunk_size = chunk if chunk is not None and chunk < len(data["input_ids"]) else None
    with _eval_mode(model):
        grads, outputs = vmap(grad(output, has_aux=True), in_dims=(None, 0, 0, 0, 0), chunk_size=chunk_size)(
            params, data["input_ids"], mask, positions, targets
        )
    flat = torch.cat([grads[n].reshape(grads[n].shape[0], -1) for n in names], dim=1)
    return SampleGradients(outputs=outputs.detach(), grads=flat.detach())


def per_sample_gradients_loop(
    model: torch.nn.Module,
    batch: Mapping[str, torch.Tensor],
    names: Sequence[str] | None = None,
    clamp: ClampMode = "toy",
    shared_forward: bool = False,
) -> SampleGradients:
    """The same as :func:`per_sample_gradients`, with one ``autograd.grad`` call per sample.

    Written the reference's way on purpose (softmax, boolean mask over the
    target tokens, mean, ``torch.autograd.grad``), so it is an independent
    oracle for the batched version and the baseline of ``bench/gradients.py``.
    By default each sample gets its own forward pass (the cheaper loop);
    ``shared_forward=True`` is exactly ``AlpacaModel.predict_step``: one
    forward of the whole batch, then a ``retain_graph`` backward per sample,
    each of which walks the whole batch's graph.
    """
    _check_batch(batch)
    names = list(names or gradient_parameter_names(model))
    all_params = dict(model.named_parameters())
    params = [all_params[n] for n in names]
    device = params[0].device
    data = _to_device(batch, device)
    n = data["input_ids"].shape[0]

    def forward(rows: slice) -> torch.Tensor:
        kwargs = {k: v[rows] for k, v in data.items() if k != "labels"}
        return model(**kwargs).logits[:, :-1].float()

    outputs, grads = [], []
    with _eval_mode(model), torch.enable_grad():
        shared = forward(slice(None)) if shared_forward else None
        for i in range(n):
            logits = shared[i] if shared_forward else forward(slice(i, i + 1))[0]
            labels = data["labels"][i, 1:]
            mask = labels != -100
            probs = torch.softmax(logits[mask], dim=-1)
            p = probs[torch.arange(probs.shape[0], device=device), labels[mask]]
            f = clamped_log_odds(p, clamp).mean()
            g = torch.autograd.grad(f, params, retain_graph=shared_forward and i < n - 1, allow_unused=True)
            grads.append(torch.cat([(gi if gi is not None else torch.zeros_like(pi)).reshape(-1)
                                    for gi, pi in zip(g, params)]))
            outputs.append(f.detach())
    return SampleGradients(outputs=torch.stack(outputs), grads=torch.stack(grads))


@torch.no_grad()
def sample_outputs(model: torch.nn.Module, batches: Iterable[Mapping[str, torch.Tensor]],
                   clamp: ClampMode = "toy") -> np.ndarray:
    """``f_i`` for every sample of ``batches`` (no gradients), as float64 ``[n]``;
    the error check's fine-tuned outputs.
    """
    device = next(model.parameters()).device
    out = []
    with _eval_mode(model):
        for batch in batches:
            _check_batch(batch)
            data = _to_device(batch, device)
            kwargs = {k: v for k, v in data.items() if k != "labels"}
            logits = model(**kwargs).logits
            out.append(mean_log_odds(logits, data["labels"], clamp).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def projected_gradients(
    model: torch.nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    projection: RademacherProjection,
    names: Sequence[str] | None = None,
    clamp: ClampMode = "toy",
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(outputs [n], z [n, d])`` over ``batches``: batched per-sample gradients, projected batch by batch.

    ``projection`` is a :class:`~demoscope.selection.projection.RademacherProjection`
    with ``dim_in == gradient_dim(model)``. This is the per-shard work a Ray
    Data job runs; only ``[B, D]`` gradients of one batch are ever in memory.
    """
    names = list(names or gradient_parameter_names(model))
    dim = gradient_dim(model, names)
    if projection.dim_in != dim:
        raise ConfigError(f"projection has dim_in={projection.dim_in} but the adapter's gradients have D={dim}")
    outputs, zs = [], []
    for batch in batches:
        result = per_sample_gradients(model, batch, names, clamp, chunk_size)
        outputs.append(result.outputs.double().cpu().numpy())
        zs.append(np.asarray(projection.project(result.grads).cpu().numpy(), dtype=np.float32))
    if not zs:
        return np.zeros(0), np.zeros((0, projection.dim_out), np.float32)
    return np.concatenate(outputs), np.concatenate(zs)
