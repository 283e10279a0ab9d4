"""The reference's CPU-sized toy: noisy 5-digit addition, groups of samples as sources (GradEx §C.3).

``examples/example_noisy_synthetic_addition_task.ipynb`` trains a 2-layer
GPT-2 on 300 clean + 200 random-label samples of 5-digit addition with
intermediate steps, takes groups of 25 samples as sources, estimates 200
random subsets of 7 of the 20 groups by the first-order method and shows
that the random-ensemble scores separate clean from noisy groups.

Ours is the same experiment at test size, with a LoRA adapter as the
meta-trained model (the notebook differentiates the full model):

1. a character-level GPT-2 (:func:`build_model`) is pre-trained briefly on
   clean addition, standing in for a pre-trained LM;
2. a LoRA adapter on ``c_attn``/``c_proj``/``c_fc`` (the reference's GPT-2
   targets) is meta-trained on the union of all sources, noisy ones included;
3. per-sample projected gradients per source;
4. random-ensemble scores with the first-order estimate of clean validation
   loss as each subset's value (the notebook uses generated-answer accuracy;
   loss needs no decoding): clean sources should score lower (better).

:func:`build_world` does steps 1-2 and returns the :class:`SelectionWorld`
that steps 3-4 use; the select job (``demoscope select``) runs those.

The notebook's content, written compactly (no spaces, ``|`` between steps,
``=`` ending the prompt; one character is one token)::

    67013+23924=07|037|0937|10937|90937

Steps are ``carry, low digits so far`` after each column (the last one is
the answer itself); noisy samples replace every answer digit at random.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from demoscope.selection.first_order import (
    ApproximationError,
    FirstOrderEstimator,
    FirstOrderSettings,
    check_first_order,
    validation_loss,
)
from demoscope.selection.gradients import ClampMode, gradient_dim, gradient_parameter_names, projected_gradients
from demoscope.selection.projection import RademacherProjection

PAD, EOS = "<pad>", "<eos>"
VOCAB = [PAD, EOS, *"0123456789", "+", "=", "|"]
TOKEN_ID = {t: i for i, t in enumerate(VOCAB)}
# The reference's LoRA targets for GPT-2 (fast_estimate_eval_gradients_instruction.py).
GPT2_TARGETS = ["c_attn", "c_proj", "c_fc"]


def addition_steps(a: Sequence[int], b: Sequence[int]) -> tuple[list[list[int]], list[int]]:
    """The notebook's ``addition``: per column, ``[carry] + low digits so far`` (most significant first),
    and the sum's digits.
    """
    digits = [x + y for x, y in zip(a[::-1], b[::-1])]
    steps = []
    for i in range(len(digits)):
        carry = 0
        if digits[i] >= 10:
            if i == len(digits) - 1:
                digits.append(1)
            else:
                digits[i + 1] += 1
            digits[i] -= 10
            carry = 1
        steps.append([carry] + digits[: i + 1][::-1])
    # The notebook keeps every step but the last; the answer replaces it.
    return steps[:-1], digits[::-1]


def make_example(rng: np.random.Generator, n_digits: int = 5, noisy: bool = False) -> tuple[str, str]:
    """``(prompt, answer)`` for one random sum; ``noisy`` draws every answer digit uniformly (same shapes)."""
    a = [int(rng.integers(1, 10))] + [int(d) for d in rng.integers(0, 10, n_digits - 1)]
    b = [int(rng.integers(1, 10))] + [int(d) for d in rng.integers(0, 10, n_digits - 1)]
    steps, out = addition_steps(a, b)
    if noisy:
        steps = [[int(d) for d in rng.integers(0, 10, len(s))] for s in steps]
        out = [int(d) for d in rng.integers(0, 10, len(out))]
    prompt = "".join(map(str, a)) + "+" + "".join(map(str, b)) + "="
    answer = "|".join("".join(map(str, s)) for s in [*steps, out])
    return prompt, answer


def encode(prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """Token ids of ``prompt + answer + <eos>`` and labels that score only the answer and ``<eos>``."""
    ids = [TOKEN_ID[c] for c in prompt] + [TOKEN_ID[c] for c in answer] + [TOKEN_ID[EOS]]
    labels = [-100] * len(prompt) + ids[len(prompt):]
    return ids, labels


def collate(examples: Sequence[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    """Right-padded batch: ``input_ids``, ``attention_mask``, ``labels`` (-100 on pads)."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), TOKEN_ID[PAD], dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def batches(examples: Sequence, batch_size: int) -> list[dict[str, torch.Tensor]]:
    """Consecutive batches, in order."""
    return [collate(examples[i: i + batch_size]) for i in range(0, len(examples), batch_size)]


def build_model(hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4, seed: int = 0):
    """A seeded random character-level ``GPT2LMHeadModel`` over :data:`VOCAB` (dropout off)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(VOCAB), n_embd=hidden_size, n_layer=num_layers, n_head=num_heads, n_positions=64,
        bos_token_id=TOKEN_ID[EOS], eos_token_id=TOKEN_ID[EOS], pad_token_id=TOKEN_ID[PAD],
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(config)


def train(model: torch.nn.Module, examples: Sequence, steps: int, lr: float, batch_size: int, seed: int) -> list[float]:
    """AdamW (weight decay 1e-4, as the notebook) on random mini-batches of ``examples``; returns the losses."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    model.train()
    losses = []
    for _ in range(steps):
        batch = collate([examples[i] for i in rng.choice(len(examples), min(batch_size, len(examples)), replace=False)])
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


@dataclass(frozen=True)
class ToySettings:
    """Sizes of the toy world and its estimates; :func:`build_world` takes well under a minute on two CPU cores.

    The notebook's sizes are 12 clean + 8 noisy groups of 25, d=200, 200
    subsets of 7 groups (the select job's ``--n-subsets``), C=6e-2 without
    rescaling. ``scale=None`` gives its unrescaled step too; with it the
    estimates leave the linear regime (losses 3-10x the meta-trained one) and
    one of 12 seeds we tried lost the clean/noisy separation, which rescaling
    to 0.05 ||theta*_LoRA|| kept on all 12.
    """

    clean_sources: int = 6
    noisy_sources: int = 4
    samples_per_source: int = 16
    n_digits: int = 5
    pretrain_examples: int = 2000
    pretrain_steps: int = 600
    meta_steps: int = 100
    val_examples: int = 64
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    lora_r: int = 4
    lora_alpha: int = 16
    project_dim: int = 200
    C: float = 6e-2
    scale: float | None = 0.05
    clamp: ClampMode = "toy"
    batch_size: int = 32
    error_check_scale: float = 0.01
    seed: int = 0
    loss_weighting: str = "sample"  # validation losses averaged per sample (the reference) or per token


def make_sources(settings: ToySettings, rng: np.random.Generator) -> tuple[dict[str, list], list[str]]:
    """``{source: encoded examples}`` (clean ones first) and the names of the noisy ones."""
    sources, noisy = {}, []
    for j in range(settings.clean_sources + settings.noisy_sources):
        is_noisy = j >= settings.clean_sources
        name = f"{'noisy' if is_noisy else 'clean'}-{j:02d}"
        sources[name] = [encode(*make_example(rng, settings.n_digits, is_noisy))
                         for _ in range(settings.samples_per_source)]
        if is_noisy:
            noisy.append(name)
    return sources, noisy


@dataclass
class SelectionWorld:
    """A meta-trained model, its sources and validation data: what a selection job distributes.

    The toy builds one (:func:`build_world`); so does
    :func:`demoscope.selection.opinion_sources.build_opinion_world` for survey waves.
    ``settings`` supplies ``batch_size``, ``clamp``, ``C``, ``scale`` and ``seed``.
    """

    model: torch.nn.Module
    sources: dict[str, list]
    noisy: list[str]
    val_batches: dict[str, list]
    names: list[str]
    projection: RademacherProjection
    settings: ToySettings

    def examples(self, subset: Sequence[str]) -> list:
        """The training examples of the sources in ``subset``."""
        return [ex for name in subset for ex in self.sources[name]]

    def fingerprint(self) -> str:
        """A hash of what the gradients depend on: adapter weights, projection, clamp and every source's samples."""
        import hashlib

        digest = hashlib.sha256()
        params = dict(self.model.named_parameters())
        for name in self.names:
            digest.update(name.encode())
            digest.update(params[name].detach().cpu().float().numpy().tobytes())
        digest.update(repr((sorted(self.projection.to_dict().items()), self.settings.clamp)).encode())
        for source in sorted(self.sources):
            digest.update(source.encode())
            for ids, labels in self.sources[source]:
                digest.update(np.asarray(ids, np.int64).tobytes() + b"|" + np.asarray(labels, np.int64).tobytes())
        return digest.hexdigest()

    def source_gradients(self, source: str) -> tuple[np.ndarray, np.ndarray]:
        """``(outputs [n], z [n, d])`` of one source's samples, in the source's order.

        The samples are batched shortest first, so a batch pads to a similar
        length (survey prompts vary 3x in length: about 1.4x less compute),
        and the rows are put back in order afterwards.
        """
        examples = self.sources[source]
        order = np.argsort([len(ids) for ids, _ in examples], kind="stable")
        outputs, z = projected_gradients(self.model, batches([examples[i] for i in order], self.settings.batch_size),
                                         self.projection, self.names, self.settings.clamp)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return outputs[inverse], z[inverse]

    def error_check(self, stored: Mapping[str, tuple[np.ndarray, np.ndarray]], subset: Sequence[str],
                    max_samples: int = 256) -> ApproximationError:
        """The reference's error check for ``subset``: first-order outputs against the actually moved adapter.

        ``stored`` maps each source to its ``(outputs, z)`` as written by the
        gradient job (sample order = ``self.sources`` order). The step is the
        subset's estimate at ``settings.error_check_scale`` (a small move, where
        a linearisation should hold); at most ``max_samples`` of the subset's
        samples are re-run, the first ones of each source in turn.
        """
        estimator = FirstOrderEstimator(
            self.model, self.projection, {k: z for k, (_, z) in stored.items()}, self.val_batches,
            FirstOrderSettings(C=self.settings.C, scale=self.settings.error_check_scale, seed=self.settings.seed),
            self.names)
        per_source = max(1, max_samples // len(subset))
        examples = [ex for name in subset for ex in self.sources[name][:per_source]]
        f0 = np.concatenate([stored[name][0][:per_source] for name in subset])
        z = np.concatenate([stored[name][1][:per_source] for name in subset])
        return check_first_order(self.model, estimator.base, estimator.delta(subset),
                                 batches(examples, self.settings.batch_size), f0, z, self.settings.clamp)


def add_lora(model: torch.nn.Module, settings: ToySettings = ToySettings()) -> torch.nn.Module:
    """``model`` with the toy's fresh LoRA adapter (``lora_r``, ``lora_alpha``, no dropout) on :data:`GPT2_TARGETS`."""
    from demoscope.training.lora import LoraSettings, apply_lora

    with warnings.catch_warnings():
        # PEFT notes that GPT-2's Conv1D needs fan_in_fan_out and sets it itself.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)  # transformers deprecations PEFT triggers
        return apply_lora(model, LoraSettings(r=settings.lora_r, alpha=settings.lora_alpha, dropout=0.0,
                                              target_modules=GPT2_TARGETS))


def build_world(settings: ToySettings = ToySettings()) -> SelectionWorld:
    """Pre-train the character GPT-2, meta-train its LoRA adapter on all sources, and set up the projection."""
    rng = np.random.default_rng(settings.seed)
    sources, noisy = make_sources(settings, rng)
    pretrain = [encode(*make_example(rng, settings.n_digits)) for _ in range(settings.pretrain_examples)]
    val = [encode(*make_example(rng, settings.n_digits)) for _ in range(settings.val_examples)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = build_model(settings.hidden_size, settings.num_layers, settings.num_heads, settings.seed)
        train(model, pretrain, settings.pretrain_steps, lr=5e-3, batch_size=settings.batch_size, seed=settings.seed)
        model = add_lora(model, settings)
        union = [ex for examples in sources.values() for ex in examples]
        train(model, union, settings.meta_steps, lr=5e-3, batch_size=settings.batch_size, seed=settings.seed + 1)
    names = gradient_parameter_names(model)
    projection = RademacherProjection(gradient_dim(model, names), settings.project_dim, seed=settings.seed)
    return SelectionWorld(model, sources, noisy, {"addition": batches(val, settings.batch_size)}, names, projection,
                          settings)


def fine_tune_loss(world: SelectionWorld, subset: Sequence[str], steps: int, lr: float = 5e-3) -> float:
    """The real thing the estimate stands for: fine-tune a copy of the meta-trained adapter on ``subset``; val loss."""
    import copy

    model = copy.deepcopy(world.model)
    train(model, world.examples(subset), steps, lr=lr, batch_size=world.settings.batch_size,
          seed=world.settings.seed + 2)
    return validation_loss(model, [b for group in world.val_batches.values() for b in group],
                           world.settings.loss_weighting)
