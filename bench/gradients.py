"""Benchmark: per-sample projected gradients, batched ``torch.func`` against per-sample autograd loops.

    .venv/bin/python bench/gradients.py [--samples 64 --batch-size 64 --reference-batch-size 8 --threads N]

In one run, on the same model and the same samples, GradEx's step 2
(``reference/politune-w2s-gradex-distillation.md`` §C.1): per-sample
gradients of the mean clamped token log-odds w.r.t. the LoRA tensors,
projected to d=200 by the blockwise Rademacher projection, three ways:
  batched    ``per_sample_gradients``: ``vmap(grad(...))`` with
             ``functional_call`` over batches of ``--batch-size``;
  loop       ``per_sample_gradients_loop``: one forward and one
             ``autograd.grad`` per sample (the cheapest simple loop);
  reference  ``per_sample_gradients_loop(shared_forward=True)``: what the
             reference's ``AlpacaModel.predict_step`` does, one forward per
             batch of ``--reference-batch-size`` (8, the CoT scripts'), then a
             ``retain_graph`` backward per sample through the whole batch.
for three models: the reference toy's regime (character GPT-2, hidden 64,
2 layers, LoRA r=4 on c_attn/c_proj/c_fc, 5-digit-addition samples of ~36
tokens), the factory tiny Llama (hidden 128, 2 layers, vocab 2k, LoRA r=8
on q_proj/v_proj) and a larger tiny GPT-2 (hidden 256, 4 layers, LoRA r=8 on
c_attn/c_proj/c_fc), both on random 32-64-token samples; LoRA B matrices are
made non-zero, as after meta-training. Each variant runs ``--repeats``
times, interleaved, and its best run is kept (the machine may be shared).
It checks that all three give the same projections, then prints samples/s,
the ratios and the peak RSS of the process during each variant (above the
RSS before it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aggregate import PeakRSS  # noqa: E402  (the same sampler as the other benchmarks)


def nonzero_lora_b(model, std: float = 0.02):
    """Give the adapter the non-zero B matrices a meta-trained one has (fresh LoRA has B = 0)."""
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, std)
    return model.eval()


def toy_setup(samples: int):
    """The reference toy's model and data: character GPT-2 with LoRA, noisy-addition batches."""
    from demoscope.selection import toy

    model = toy.add_lora(toy.build_model(), toy.ToySettings())  # the toy's defaults: r=4, alpha=16
    rng = np.random.default_rng(0)
    examples = [toy.encode(*toy.make_example(rng, noisy=i % 3 == 0)) for i in range(samples)]
    return nonzero_lora_b(model), lambda size: toy.batches(examples, size)


def factory_setup(arch: str, hidden: int, layers: int, heads: int, samples: int, seq_len: int):
    """A factory tiny model with a LoRA adapter, and random token batches."""
    from demoscope.models import build_tiny_model, load_causal_lm, tiny_model
    from demoscope.training.lora import LoraSettings, apply_lora

    if arch == "llama" and (hidden, layers) == (128, 2):
        model, _ = load_causal_lm(tiny_model("llama"), dtype="float32", device="cpu")
    else:
        with tempfile.TemporaryDirectory(prefix="bench-gradients-") as tmp:
            path = build_tiny_model(Path(tmp), arch=arch, hidden_size=hidden, num_layers=layers, num_heads=heads)
            model, _ = load_causal_lm(path, dtype="float32", device="cpu")
    targets = ["q_proj", "v_proj"] if arch == "llama" else ["c_attn", "c_proj", "c_fc"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = apply_lora(model, LoraSettings(r=8, alpha=32, dropout=0.05, target_modules=targets))
    rows = random_rows(model.config.vocab_size, samples, seq_len)
    return nonzero_lora_b(model), lambda size: [_collate(rows[i: i + size]) for i in range(0, samples, size)]


def random_rows(vocab: int, samples: int, seq_len: int, seed: int = 0) -> list[tuple[torch.Tensor, int]]:
    """Random token rows of 32-64 tokens; the first quarter of each is an unscored prompt."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (samples, seq_len), generator=g)
    lengths = torch.randint(seq_len // 2, seq_len + 1, (samples,), generator=g)
    return [(ids[i, : int(lengths[i])], seq_len // 4) for i in range(samples)]


def _collate(rows) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, -100)
    for i, (ids, prompt) in enumerate(rows):
        input_ids[i, : len(ids)], mask[i, : len(ids)] = ids, 1
        labels[i, prompt: len(ids)] = ids[prompt:]
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def run_batched(model, batches, projection, names):
    from demoscope.selection.gradients import projected_gradients

    return projected_gradients(model, batches, projection, names, "instruction")[1]


def run_loop(model, batches, projection, names, shared_forward=False):
    from demoscope.selection.gradients import per_sample_gradients_loop

    return np.concatenate([projection.project(per_sample_gradients_loop(model, b, names, "instruction",
                                                                        shared_forward).grads.numpy())
                           for b in batches])


def bench(label: str, model, make_batches, args) -> dict[str, float]:
    """Time the three variants on ``model``; print and return samples/s."""
    import psutil

    from demoscope.selection.gradients import gradient_dim, gradient_parameter_names
    from demoscope.selection.projection import RademacherProjection

    names = gradient_parameter_names(model)
    projection = RademacherProjection(gradient_dim(model, names), args.project_dim, seed=0)
    projection.matrix()  # generated once up front, outside the timings
    runners = {
        "batched": lambda: run_batched(model, make_batches(args.batch_size), projection, names),
        "loop": lambda: run_loop(model, make_batches(args.batch_size), projection, names),
        "reference": lambda: run_loop(model, make_batches(args.reference_batch_size), projection, names, True),
    }
    best = {k: float("inf") for k in runners}
    memory = {k: 0 for k in runners}
    results = {}
    for repeat in range(args.repeats + 1):  # the first round warms up and is not timed
        for name, runner in runners.items():
            before = psutil.Process().memory_info().rss
            with PeakRSS() as peak:
                start = time.perf_counter()
                results[name] = runner()
                elapsed = time.perf_counter() - start
            if repeat:
                best[name] = min(best[name], elapsed)
                memory[name] = max(memory[name], peak.peak - before)
    scale = np.abs(results["loop"]).max()
    agree = max(np.abs(results[k] - results["loop"]).max() for k in ("batched", "reference")) / scale
    rates = {k: args.samples / v for k, v in best.items()}
    print(f"{label}: D={projection.dim_in:,} LoRA params -> d={args.project_dim}; {args.samples} samples; "
          f"max |z - z_loop| / max |z_loop| = {agree:.1e}")
    batch = {"batched": args.batch_size, "loop": 1, "reference": args.reference_batch_size}
    for name in runners:
        print(f"  {name:9s} (batch {batch[name]:3d}) {rates[name]:8.1f} samples/s   "
              f"peak RSS +{memory[name] / 2**20:6.1f} MiB")
    print(f"  batched / loop: {rates['batched'] / rates['loop']:.1f}x   "
          f"batched / reference: {rates['batched'] / rates['reference']:.1f}x")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--reference-batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--project-dim", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch intra-op threads for every variant (default: torch's, one per core)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} torch thread(s); "
          f"best of {args.repeats} interleaved runs after a warm-up round; peak memory = process RSS")
    bench("toy char GPT-2 (hidden 64, 2 layers, LoRA r=4), addition samples", *toy_setup(args.samples), args)
    bench("tiny Llama (hidden 128, 2 layers, LoRA r=8 q/v)",
          *factory_setup("llama", 128, 2, 2, args.samples, args.seq_len), args)
    bench("tiny GPT-2 (hidden 256, 4 layers, LoRA r=8 c_attn/c_proj/c_fc)",
          *factory_setup("gpt2", 256, 4, 4, args.samples, args.seq_len), args)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
