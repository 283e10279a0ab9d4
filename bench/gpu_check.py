"""GPU check: the option scorer, per-sample gradients and a LoRA opinion-KL step on a 1B Llama, against the roofline.

On a lent GPU machine (the device tool's ``run``; it copies the working tree,
not the venv, so this script puts the repo's ``platform/`` on ``sys.path``
itself and needs only torch, transformers, peft, accelerate and numpy; its
inputs and measuring tools are ``gpu_check_inputs.py`` and
``gpu_check_roofline.py`` beside it):

    PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --out $OUT/gpu_check.json

(``timeout_s=540``; the run should take 1-2 minutes on an H200; a section
stops repeating its rounds after ``--section-budget-s`` (100 s) or its share
of what is left of ``--budget-s`` (420 s), and a section reached after that
is skipped). Without a GPU it runs the tiny config (``make bench`` does), as the
tests do:

    .venv/bin/python bench/gpu_check.py --config tiny --device cpu --out /tmp/gpu_check.json

The model is a Llama shaped like Llama-3.2-1B (hidden 2048, 16 layers, 32
heads, 8 KV heads, MLP 8192, vocab 128256, tied embeddings: 1.24B
parameters), built from its config with random weights in bf16; ``--config
tiny`` is a 2-layer float32 toy for CPU tests. Nothing is downloaded.

roofline   the card's dense matmul rate in the model's dtype, measured with a
           timed ``n x n`` matmul after a warm-up (the nominal datasheet rate
           is printed beside it where known). Every figure below is also
           given as a share of this rate.
scoring    (a) the Transformers option scorer on SubPOP-shaped prompts (22
           steering groups x 20 questions, 178 tokens on average, with the
           real prompts' shared-prefix structure; token ids, since the
           machine has no tokenizer and ``demoscope.surveys`` needs pydantic).
           Three variants, best of ``--repeats`` interleaved rounds:
           ``loop`` one full forward per prompt (bench/scoring.py's baseline),
           ``batched`` ``TransformersOptionScorer(reuse_prefix=False)`` and
           ``ours`` ``TransformersOptionScorer`` (shared-prefix KV reuse).
           Prompts/s and their ratios, token positions run against the
           loop's (counted by hooks on the embedding and the head in an
           untimed run), executed FLOP/s (2 x body params x positions run
           + 2 x head params x positions projected), the useful rate 2 x params x
           loop tokens / time (the prefill roofline's work; above 100% means
           reuse skipped work the roofline counts), and the max |p - p_loop|.
gradients  (b) batched per-sample projected LoRA gradients
           (``projected_gradients``: ``vmap(grad)``) against the per-sample
           autograd loop (``per_sample_gradients_loop``), as bench/gradients.py
           does on CPU: samples/s, ratio, ~4 x params x positions FLOPs
           (forward + activation gradients; LoRA weight gradients are tiny),
           and the relative max |z - z_loop|.
training   (c) LoRA (r=8, q/v, SubPOP's defaults) opinion-KL steps through
           ``demoscope.training.opinion_loop.train_epoch`` on left-padded
           SubPOP-shaped batches: examples/s, tokens/s and FLOP share with
           4 x body params x positions + 4 x head params x rows (the frozen
           base weights need no weight gradients, so 4 rather than full
           fine-tuning's 6; only the last position is projected).

Sections run in the order scoring, training, gradients (vmap over a 1B model
is the likeliest to be slow, so it goes last). Attention's own FLOPs are left
out of every count (under 2% at these lengths).
The JSON file (machine, config, roofline, every figure) is rewritten
atomically after each section, so a run cut short keeps what it measured;
a section that raises is recorded with its error and the exit status is 1.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

# The device machine gets a plain copy of the tree (no `pip install`): find the library beside this file.
REPO = Path(__file__).resolve().parents[1]
LIBRARY_PATH = str(REPO / "platform")
if LIBRARY_PATH not in sys.path:
    sys.path.insert(0, LIBRARY_PATH)
# Its sibling modules (already on the path when run as a script; not under runpy or an import by file).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))

from gpu_check_inputs import (  # noqa: E402
    LETTER_IDS,
    SPACE_LETTER_IDS,
    IdTokenizer,
    add_lora,
    gradient_batches,
    opinion_batches,
    subpop_shaped_ids,
    trie_positions,
)
from gpu_check_roofline import (  # noqa: E402
    SHAPES,
    PositionCounter,
    build_model,
    machine_info,
    measure_matmul_rate,
    nominal_rate,
    parameter_counts,
    peak_memory_mib,
    rate_text,
    reset_peak_memory,
    share,
    timed,
    write_json,
)

SECTIONS = ("scoring", "gradients", "training")

# Per-config defaults of the budget knobs; the tiny ones keep the CPU test to seconds.
DEFAULTS: dict[str, dict[str, Any]] = {
    "1b": {"dtype": "bfloat16", "groups": 22, "questions": 20, "batch_size": 16, "repeats": 3, "grad_samples": 64,
           "grad_seq_len": 64, "train_batch_size": 32, "train_steps": 20, "matmul_n": 8192},
    "tiny": {"dtype": "float32", "groups": 6, "questions": 8, "batch_size": 16, "repeats": 2, "grad_samples": 16,
             "grad_seq_len": 32, "train_batch_size": 8, "train_steps": 3, "matmul_n": 512},
}


# -- (a) the option scorer -----------------------------------------------------------------------------------


def loop_scores(model: torch.nn.Module, ids: list[list[int]], n_options: Sequence[int]) -> list[np.ndarray]:
    """The baseline: one full forward per prompt, the §4.1 sum rule on the last position (as bench/scoring.py)."""
    device = model.device
    no_space, space = torch.tensor(LETTER_IDS, device=device), torch.tensor(SPACE_LETTER_IDS, device=device)
    out = []
    with torch.inference_mode():
        for seq, n in zip(ids, n_options):
            logits = model(input_ids=torch.tensor([seq], device=device)).logits[0, -1]
            probs = torch.softmax(logits.double(), -1)
            p = (probs[no_space] + probs[space])[:n].cpu().numpy()
            out.append(p / p.sum())
    return out


def rounds_within(repeats: int, budget_s: float, started: float) -> Any:
    """Round indices ``0..repeats-1``, stopping early (after at least one) once the section's budget is spent."""
    for index in range(repeats):
        if index and time.perf_counter() - started > budget_s:
            print(f"  (section budget of {budget_s:.0f} s spent: stopping after {index} round(s))")
            return
        yield index


def check_scoring(model: torch.nn.Module, args: argparse.Namespace, counts: dict[str, int],
                  peak: float) -> dict[str, Any]:
    """(a) Prompts/s, positions and roofline shares of the loop, batched and prefix-reusing option scorers."""
    from demoscope.models.scoring import TransformersOptionScorer

    started, device = time.perf_counter(), model.device
    ids, n_options = subpop_shaped_ids(args.groups, args.questions, model.config.vocab_size)
    texts = [" ".join(map(str, seq)) for seq in ids]
    tok = IdTokenizer()
    ours = TransformersOptionScorer(model, tok, batch_size=args.batch_size)
    batched = TransformersOptionScorer(model, tok, batch_size=args.batch_size, reuse_prefix=False)
    variants = {
        "loop": lambda: loop_scores(model, ids, n_options),
        "batched": lambda: batched.score(texts, n_options),
        "ours": lambda: ours.score(texts, n_options),
    }
    warm = slice(0, min(len(ids), 2 * args.batch_size))
    loop_scores(model, ids[warm], n_options[warm])
    batched.score(texts[warm], n_options[warm])
    ours.score(texts[warm], n_options[warm])

    best = {name: math.inf for name in variants}
    results: dict[str, list[np.ndarray]] = {}
    rounds = 0
    for _ in rounds_within(args.repeats, args.round_budget_s, started):
        for name, fn in variants.items():  # interleaved, so a busy moment hits every variant
            results[name], seconds = timed(fn, device)
            best[name] = min(best[name], seconds)
        rounds += 1

    loop_tokens = sum(len(seq) for seq in ids)
    work = {}
    for name, fn in variants.items():  # one more, untimed, run of each to count what it computes
        with PositionCounter(model) as counter:
            fn()
        work[name] = (counter.body, counter.head, counter.passes)
    trie = trie_positions(ids)
    useful = 2.0 * counts["total"] * loop_tokens  # the prefill roofline's work: every prompt token, full model
    roofline_s = useful / peak
    figures: dict[str, Any] = {}
    for name in variants:
        body, head, passes = work[name]
        executed = 2.0 * counts["body"] * body + 2.0 * counts["head"] * head
        seconds = best[name]
        figures[name] = {
            "seconds": seconds, "prompts_per_s": len(ids) / seconds, "speedup_vs_loop": best["loop"] / seconds,
            "body_positions": body, "head_positions": head, "forward_passes": passes,
            "positions_vs_loop": body / loop_tokens,
            "executed_flops_per_s": executed / seconds, "executed_share_of_roofline": share(executed, seconds, peak),
            "useful_flops_per_s": useful / seconds, "useful_share_of_roofline": share(useful, seconds, peak),
            "time_vs_roofline": seconds / roofline_s,
            "max_abs_diff_vs_loop": max(float(np.abs(a - b).max()) for a, b in zip(results["loop"], results[name])),
        }
    print(f"[scoring] {len(ids)} prompts ({args.groups} groups x {args.questions} questions), "
          f"{loop_tokens / len(ids):.1f} tokens on average (prefix-trie minimum {trie:,} positions, "
          f"{trie / loop_tokens:.2f}x loop), batch {args.batch_size}, best of {rounds} round(s); "
          f"roofline (2 x {counts['total'] / 1e6:.1f}M params x {loop_tokens:,} tokens) {roofline_s * 1e3:.1f} ms")
    for name, f in figures.items():
        print(f"  {name:<8} {f['seconds']:8.3f} s {f['prompts_per_s']:9.1f} prompts/s {f['speedup_vs_loop']:6.2f}x loop"
              f"  positions {f['body_positions']:>7,} ({f['positions_vs_loop']:.2f}x loop,"
              f" {f['forward_passes']} passes)"
              f"  executed {f['executed_share_of_roofline']:6.1%} of roofline"
              f"  useful {f['useful_share_of_roofline']:6.1%} ({f['time_vs_roofline']:.2f}x roofline time)"
              f"  max |p - p_loop| {f['max_abs_diff_vs_loop']:.1e}")
    return {"prompts": len(ids), "groups": args.groups, "questions": args.questions, "loop_tokens": loop_tokens,
            "mean_tokens": loop_tokens / len(ids), "trie_positions": trie, "batch_size": args.batch_size,
            "rounds": rounds,
            "roofline_seconds": roofline_s, "variants": figures,
            "ours_vs_loop": figures["ours"]["speedup_vs_loop"],
            "ours_vs_batched": best["batched"] / best["ours"],
            "max_abs_diff": max(figures[k]["max_abs_diff_vs_loop"] for k in ("batched", "ours")),
            "seconds": time.perf_counter() - started}


# -- (b) per-sample projected gradients -----------------------------------------------------------------------


def check_gradients(model: torch.nn.Module, args: argparse.Namespace, counts: dict[str, int],
                    peak: float) -> dict[str, Any]:
    """(b) Samples/s of batched per-sample projected gradients against the per-sample loop."""
    from demoscope.selection.gradients import (
        gradient_dim,
        gradient_parameter_names,
        per_sample_gradients_loop,
        projected_gradients,
    )
    from demoscope.selection.projection import RademacherProjection

    started, device = time.perf_counter(), model.device
    names = gradient_parameter_names(model)
    dim = gradient_dim(model, names)
    # Cache the whole matrix (hundreds of MB at 1B) so timings hold the gradients, not the generator.
    projection = RademacherProjection(dim, args.project_dim, seed=0, cache_bytes=4 * dim * args.project_dim)
    projection.matrix()
    batches = gradient_batches(model.config.vocab_size, args.grad_samples, args.grad_seq_len, args.grad_samples)

    def batched() -> np.ndarray:
        return projected_gradients(model, batches, projection, names, "instruction", args.grad_chunk)[1]

    def loop() -> np.ndarray:
        return np.concatenate([projection.project(per_sample_gradients_loop(model, b, names, "instruction").grads)
                               .cpu().numpy() for b in batches])

    warm = [{k: v[:4] for k, v in batches[0].items()}]
    projected_gradients(model, warm, projection, names, "instruction", args.grad_chunk)
    per_sample_gradients_loop(model, warm[0], names, "instruction")

    best = {"batched": math.inf, "loop": math.inf}
    results: dict[str, np.ndarray] = {}
    rounds = 0
    for _ in rounds_within(args.repeats, args.round_budget_s, started):
        for name, fn in (("batched", batched), ("loop", loop)):
            results[name], seconds = timed(fn, device)
            best[name] = min(best[name], seconds)
        rounds += 1

    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    targets = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
    positions = sum(b["input_ids"].numel() for b in batches)  # both paths run every row at the batch's width
    target_width = sum(len(b["labels"]) * int((b["labels"][:, 1:] != -100).sum(1).max()) for b in batches)
    # ~4 x params per position: forward 2, activation gradients 2 (LoRA weight gradients and attention ignored).
    head_positions = {"batched": target_width, "loop": positions}  # the loop projects every position
    useful = 4.0 * counts["body"] * tokens + 4.0 * counts["head"] * targets
    figures: dict[str, Any] = {}
    for name, seconds in best.items():
        executed = 4.0 * counts["body"] * positions + 4.0 * counts["head"] * head_positions[name]
        figures[name] = {"seconds": seconds, "samples_per_s": args.grad_samples / seconds,
                         "executed_share_of_roofline": share(executed, seconds, peak),
                         "useful_share_of_roofline": share(useful, seconds, peak)}
    scale = float(np.abs(results["loop"]).max())
    diff = float(np.abs(results["batched"] - results["loop"]).max()) / scale
    ratio = best["loop"] / best["batched"]
    print(f"[gradients] LoRA D={dim:,} -> d={args.project_dim}; {args.grad_samples} samples of "
          f"{args.grad_seq_len // 2}-{args.grad_seq_len} tokens, one batch, best of {rounds} round(s)")
    for name, f in figures.items():
        print(f"  {name:<8} {f['seconds']:8.3f} s {f['samples_per_s']:9.1f} samples/s"
              f"  executed {f['executed_share_of_roofline']:6.1%} of roofline"
              f"  useful {f['useful_share_of_roofline']:6.1%}")
    print(f"  batched / loop: {ratio:.2f}x   max |z - z_loop| / max |z_loop| = {diff:.1e}")
    return {"samples": args.grad_samples, "seq_len": args.grad_seq_len, "lora_dim": dim,
            "project_dim": args.project_dim, "chunk_size": args.grad_chunk, "rounds": rounds, "tokens": tokens,
            "variants": figures, "batched_vs_loop": ratio, "relative_max_diff": diff,
            "seconds": time.perf_counter() - started}


# -- (c) one LoRA opinion-KL training step ---------------------------------------------------------------------


def check_training(model: torch.nn.Module, args: argparse.Namespace, counts: dict[str, int],
                   peak: float) -> dict[str, Any]:
    """(c) Throughput of LoRA opinion-KL steps (forward, KL, backward, AdamW) through the library's loop."""
    from demoscope.training.objectives import NUM_LABELS
    from demoscope.training.opinion_loop import train_epoch
    from demoscope.training.schedules import make_scheduler

    started, device = time.perf_counter(), model.device
    ids, n_options = subpop_shaped_ids(args.groups, args.questions, model.config.vocab_size, seed=1)
    batches = opinion_batches(ids, n_options, args.train_batch_size, args.train_steps)
    warm = opinion_batches(ids, n_options, args.train_batch_size, 2, seed=2)
    label_ids = torch.tensor(SPACE_LETTER_IDS[:NUM_LABELS])  # " A".." J", as training.opinion_data does
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    scheduler = make_scheduler(optimizer, "step", len(batches) + len(warm), 1)

    def run(loader: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        return train_epoch(model, loader, optimizer, scheduler, label_ids, "kl", device=device)

    run(warm)
    sums, seconds = timed(lambda: run(batches), device)
    model.eval()
    examples = len(batches) * args.train_batch_size
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    positions = sum(b["input_ids"].numel() for b in batches)
    # Frozen base: forward 2 + activation gradients 2 per parameter and position, no weight gradients (the 6 of
    # full fine-tuning less 2); the head runs at one position per row (logits_to_keep=1).
    executed = 4.0 * counts["body"] * positions + 4.0 * counts["head"] * examples
    useful = 4.0 * counts["body"] * tokens + 4.0 * counts["head"] * examples
    figures = {"steps": len(batches), "batch_size": args.train_batch_size, "seconds": seconds,
               "step_seconds": seconds / len(batches), "examples_per_s": examples / seconds,
               "tokens_per_s": tokens / seconds, "positions_per_s": positions / seconds,
               "padding_share": 1 - tokens / positions, "mean_kl": sums["kl"] / sums["items"],
               "executed_share_of_roofline": share(executed, seconds, peak),
               "useful_share_of_roofline": share(useful, seconds, peak),
               "flop_model": "4 x body params x positions + 4 x head params x rows (frozen base: no weight grads)"}
    print(f"[training] LoRA r=8 q/v opinion-KL, {len(batches)} steps of {args.train_batch_size} prompts "
          f"({tokens / examples:.0f} tokens, {figures['padding_share']:.0%} padding)")
    print(f"  {figures['step_seconds'] * 1e3:8.1f} ms/step {figures['examples_per_s']:9.1f} examples/s "
          f"{figures['tokens_per_s']:10.0f} tokens/s  executed {figures['executed_share_of_roofline']:6.1%} of roofline"
          f"  useful {figures['useful_share_of_roofline']:6.1%}  mean KL {figures['mean_kl']:.3f}")
    return figures | {"total_seconds": time.perf_counter() - started}


# -- driver -----------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; budget knobs left unset take the chosen config's defaults."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(SHAPES), default="1b" if torch.cuda.is_available() else "tiny",
                        help="model shape (default: 1b with a GPU, the tiny CPU check without one)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    out = os.environ.get("OUT")
    default_out = Path(out) / "gpu_check.json" if out else REPO / "bench" / "out" / "gpu_check.json"
    parser.add_argument("--out", type=Path, default=default_out, help=f"JSON file (default {default_out})")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], help="model dtype (1b: bf16)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--groups", type=int, help="steering groups (at most 22)")
    parser.add_argument("--questions", type=int, help="questions per group (at most 20)")
    parser.add_argument("--batch-size", type=int, help="scorer batch size")
    parser.add_argument("--repeats", type=int, help="timed rounds per variant (best kept)")
    parser.add_argument("--grad-samples", type=int, help="samples for the gradient check (one batch)")
    parser.add_argument("--grad-seq-len", type=int, help="longest gradient sample")
    parser.add_argument("--grad-chunk", type=int, default=None, help="vmap chunk (default: the library's choice)")
    parser.add_argument("--project-dim", type=int, default=200)
    parser.add_argument("--train-batch-size", type=int, help="prompts per training step")
    parser.add_argument("--train-steps", type=int, help="timed training steps")
    parser.add_argument("--matmul-n", type=int, help="size of the roofline matmul")
    parser.add_argument("--section-budget-s", type=float, default=100.0,
                        help="stop repeating a section's rounds once it has run this long")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="whole-run budget: later sections get what is left, shared out, or are skipped")
    args = parser.parse_args(argv)
    for key, value in DEFAULTS[args.config].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen sections, print each figure, write the JSON; 1 if a section failed."""
    args = parse_args(argv)
    started = time.perf_counter()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    machine = machine_info(device)
    print(f"machine: {machine['name']}, {machine['cpus']} CPUs, python {machine['python']}, torch {machine['torch']} "
          f"(CUDA {machine['cuda']}), transformers {machine['transformers']}, peft {machine['peft']}")

    peak = measure_matmul_rate(device, dtype, args.matmul_n)
    nominal = nominal_rate(machine["name"], dtype)
    print(f"roofline: measured {rate_text(peak)} ({args.dtype} {args.matmul_n}^3 matmul)"
          + (f", nominal {rate_text(nominal)} (measured = {peak / nominal:.0%} of it)" if nominal else ""))

    model, seconds = timed(lambda: build_model(args.config, device, dtype), device)
    counts = parameter_counts(model)
    print(f"model: {args.config} Llama ({model.config.hidden_size} hidden, {model.config.num_hidden_layers} layers, "
          f"vocab {model.config.vocab_size}), {counts['total'] / 1e6:.1f}M params (body {counts['body'] / 1e6:.1f}M, "
          f"head {counts['head'] / 1e6:.1f}M), {args.dtype}, built in {seconds:.1f} s")

    report: dict[str, Any] = {
        "machine": machine,
        "config": {"name": args.config, "dtype": args.dtype, "shape": SHAPES[args.config], "params": counts,
                   "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}},
        "roofline": {"measured_flops_per_s": peak, "nominal_flops_per_s": nominal, "matmul_n": args.matmul_n,
                     "dtype": args.dtype},
    }
    write_json(args.out, report)
    chosen = args.sections.split(",")
    failed = False
    report["elapsed_s"] = time.perf_counter() - started
    # (c) runs before (b): vmap over a 1B model is the likeliest to be slow, so it goes last, where it can
    # only eat into its own budget.
    checks = [(name, check) for name, check in (("scoring", check_scoring), ("training", check_training),
                                                 ("gradients", check_gradients)) if name in chosen]
    for index, (name, check) in enumerate(checks):
        left = args.budget_s - (time.perf_counter() - started)
        if left <= 0:
            print(f"[{name}] skipped: the run's budget of {args.budget_s:.0f} s is spent")
            report[name] = {"skipped": f"run budget of {args.budget_s:.0f} s spent"}
            failed = True
            continue
        args.round_budget_s = min(args.section_budget_s, left / (len(checks) - index))
        if name != "scoring" and not hasattr(model, "peft_config"):
            model = add_lora(model)  # the base model is scored first; training and gradients share one adapter
        reset_peak_memory(device)
        try:
            report[name] = check(model, args, counts, peak)
            report[name]["peak_memory_mib"] = peak_memory_mib(device)
        except Exception as error:  # record it and go on: one GPU run should bring back every section it can
            traceback.print_exc()
            report[name] = {"error": f"{type(error).__name__}: {error}"}
            failed = True
        report["elapsed_s"] = time.perf_counter() - started
        write_json(args.out, report)
    print(f"total {report['elapsed_s']:.1f} s; wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
