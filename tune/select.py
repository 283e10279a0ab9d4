"""Data-source selection by first-order estimates (GradEx) on Ray: gradients on Ray Data, subsets as Ray Tune trials.

    demoscope select --out runs/select            # the reference's noisy-addition toy, end to end
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from demoscope.config import SelectConfig, save_config
from demoscope.errors import ConfigError
from demoscope.io import atomic_write, atomic_write_text
from demoscope.pipelines.command import Job, main_for
from demoscope.pipelines.runtime import init_ray

DESCRIPTION = """\
Which training sources are worth fine-tuning on? GradEx estimates the model
fine-tuned on any subset of sources to first order, from per-sample gradients
of a meta-trained LoRA adapter, instead of fine-tuning once per subset:
1. projected per-sample gradients of every source (Ray Data; torch.func,
   seeded Rademacher projection), stored as shards under OUT/gradients;
2. each subset's estimate (logistic regression in projected space, mapped
   back to the adapter, rescaled, validation loss) is a Ray Tune trial:
   M random subsets give each source a random-ensemble score; greedy forward
   selection adds the best source while the estimate improves;
3. verification: real fine-tunes of the adapter on the chosen subset and on
   --verify random subsets (Ray tasks), estimated vs real loss (relative
   error) and the speed-up of an estimate over a fine-tune.

--task toy is the reference's CPU-sized toy: a 2-layer GPT-2 on 5-digit
addition, sources = groups of samples, some with noisy labels; clean groups
must rank above noisy ones. --task subpop asks which survey waves of a
prepared split (GSS questions form one source) to fine-tune on, for the loss
on --val-file (each row's target: its group's modal answer letter).

writes  OUT/gradients/ (shards + meta.json), OUT/scores.csv, OUT/trials.csv,
        OUT/greedy.csv, OUT/verification.csv, OUT/scores.png, OUT/report.md

example demoscope select --n-subsets 60 --verify 2 --out runs/select
        demoscope select --task subpop --train-file runs/demo/prepare/opnqa_QA_train.parquet \\
            --val-file runs/demo/prepare/opnqa_QA_val.parquet --adapter runs/demo/train/adapter --n-subsets 8
"""


class GradientActor:
    """Ray Data UDF: projected per-sample gradients of whole sources, written as one shard each."""

    def __init__(self, world, root: str):
        self.world, self.root = world, root

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from demoscope.selection import storage
        from demoscope.selection.gradients import projected_gradients
        from demoscope.selection.toy import batches

        rows = []
        for source in batch["source"]:
            start = time.perf_counter()
            w = self.world
            outputs, z = projected_gradients(w.model, batches(w.sources[source], w.settings.batch_size), w.projection,
                                             w.names, w.settings.clamp)
            storage.write_shard(self.root, source, 0, z, outputs)
            rows.append({"source": source, "samples": len(outputs), "seconds": time.perf_counter() - start})
        return pd.DataFrame(rows)


def _estimator(world, root: str):
    from demoscope.selection import storage
    from demoscope.selection.first_order import FirstOrderEstimator, FirstOrderSettings

    stored = storage.read_gradients(root, list(world.sources))
    settings = FirstOrderSettings(C=world.settings.C, scale=world.settings.scale, seed=world.settings.seed)
    return FirstOrderEstimator(world.model, world.projection, {k: v.z for k, v in stored.items()}, world.val_batches,
                               settings, world.names)


def _trial(params: dict, world, root: str) -> dict:
    """One Tune trial: the first-order estimate of fine-tuning on ``params['subset']``."""
    import torch

    torch.set_num_threads(1)  # tiny model: threads only contend with the other trials
    start = time.perf_counter()
    loss = _estimator(world, root)(params["subset"])
    return {"estimated_loss": loss, "seconds": time.perf_counter() - start}


def _run_trials(subsets: list[list[str]], world, root: str, out: Path, name: str, concurrent: int) -> pd.DataFrame:
    from ray import tune

    trainable = tune.with_resources(tune.with_parameters(_trial, world=world, root=root), {"cpu": 1})
    tuner = tune.Tuner(
        trainable, param_space={"subset": tune.grid_search(subsets)},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrent),
        run_config=tune.RunConfig(name=name, storage_path=str(out / "tune"), verbose=0),
    )
    results = tuner.fit()
    rows = [{"subset": r.config["subset"], "estimated_loss": r.metrics["estimated_loss"], "seconds": r.metrics["seconds"]}
            for r in results if r.error is None]
    if len(rows) != len(subsets):
        errors = [str(r.error) for r in results if r.error]
        raise RuntimeError(f"{len(subsets) - len(rows)} subset trials failed; first: {errors[:1]}")
    return pd.DataFrame(rows)


def run(config: SelectConfig, address: str | None = None, verbose: bool = False) -> int:
    from rich.console import Console

    from demoscope.selection.search import ensemble_scores, sample_subsets
    from demoscope.selection.toy import ToySettings, build_world, fine_tune_loss

    out = Path(config.out).resolve()
    save_config(config, out / "config.yaml")
    console = Console(soft_wrap=True)
    settings = ToySettings(clean_sources=config.clean_sources, noisy_sources=config.noisy_sources,
                           samples_per_source=config.samples_per_source, project_dim=config.project_dim,
                           n_subsets=config.n_subsets, seed=config.seed, meta_steps=config.meta_steps)
    if config.task == "subpop":
        from demoscope.selection.opinion_sources import build_opinion_world
        from demoscope.training.opinion_data import read_prepared

        if not config.train_file or not config.val_file:
            raise ConfigError("--task subpop needs --train-file and --val-file (prepared splits)")
        with console.status("loading the model and its meta-trained adapter; one source per wave"):
            world = build_opinion_world(read_prepared(config.train_file), read_prepared(config.val_file), config.model,
                                        config.adapter, settings)
        if len(world.sources) < 2:
            raise ConfigError(f"{config.train_file} has {len(world.sources)} wave(s); selection needs at least 2")
    else:
        with console.status("pre-training the toy model and meta-training its LoRA adapter"):
            world = build_world(settings)
    ray = init_ray(address, verbose)
    import ray.data

    if not verbose:  # Tune's per-experiment banners, once per greedy round, drown the job's own lines
        import os

        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

    from demoscope.selection import storage

    root = str(out / "gradients")
    storage.write_metadata(root, world.projection, world.names, settings.clamp)
    console.rule("1. projected per-sample gradients per source (Ray Data)")
    timing = ray.data.from_pandas(pd.DataFrame({"source": list(world.sources)})).repartition(len(world.sources)).map_batches(
        GradientActor, fn_constructor_args=(world, root), batch_size=1, batch_format="pandas", concurrency=1, num_cpus=1,
    ).to_pandas()
    console.print(f"{int(timing.samples.sum())} samples of {len(timing)} sources in {timing.seconds.sum():.1f} s")

    console.rule(f"2. {config.n_subsets} random subsets as Ray Tune trials")
    sources = list(world.sources)
    size = int(config.subset_size) if config.subset_size >= 1 else config.subset_size  # a count, or a fraction
    subsets = [[sources[i] for i in s] for s in sample_subsets(len(sources), config.n_subsets, size, config.seed)]
    trials = _run_trials(subsets, world, root, out, "ensemble", config.max_concurrent_trials)
    atomic_write(out / "trials.csv", lambda tmp: trials.assign(subset=trials.subset.map(",".join)).to_csv(tmp, index=False))
    scores = ensemble_scores(sources, trials["subset"].tolist(), trials["estimated_loss"].tolist())
    table = pd.DataFrame({"source": sources, "score": [scores[s] for s in sources],
                          "noisy": [s in world.noisy for s in sources]}).sort_values("score").reset_index(drop=True)
    atomic_write(out / "scores.csv", lambda tmp: table.to_csv(tmp, index=False))
    clean, noisy = table[~table.noisy].score, table[table.noisy].score
    separation = float(np.mean([[c < n for n in noisy] for c in clean])) if len(noisy) and len(clean) else float("nan")
    console.print(table.to_string(index=False))
    if world.noisy:
        console.print(f"clean sources score better than noisy ones in {separation:.0%} of pairs")

    console.rule("3. greedy forward selection (each round's candidates as Ray Tune trials)")
    selected, best, history = [], float("inf"), []
    while len(selected) < len(sources):
        candidates = [s for s in sources if s not in selected]
        round_trials = _run_trials([selected + [c] for c in candidates], world, root, out, f"greedy-{len(selected)}",
                                   config.max_concurrent_trials)
        winner = round_trials.loc[round_trials.estimated_loss.idxmin()]
        history.append({"round": len(selected), "added": winner.subset[-1], "estimated_loss": winner.estimated_loss})
        if winner.estimated_loss >= best:
            break
        selected, best = list(winner.subset), float(winner.estimated_loss)
    atomic_write(out / "greedy.csv", lambda tmp: pd.DataFrame(history).to_csv(tmp, index=False))
    console.print(f"greedy selection: {', '.join(selected)} (estimated loss {best:.4f})")

    console.rule("4. verification: real fine-tunes (Ray tasks) against the estimates")
    rng = np.random.default_rng(config.seed + 7)
    checks = {"selected": selected, **{f"random-{i}": [sources[j] for j in sorted(rng.choice(len(sources), len(selected) or 1, replace=False))]
                                       for i in range(config.verify)}}
    fine_tune = ray.remote(num_cpus=1)(lambda w, s, steps: (time.perf_counter(), fine_tune_loss(w, s, steps), time.perf_counter()))
    world_ref = ray.put(world)
    futures = {name: fine_tune.remote(world_ref, subset, config.fine_tune_steps) for name, subset in checks.items()}
    estimator = _estimator(world, root)
    rows = []
    for name, subset in checks.items():
        start = time.perf_counter()
        estimate = estimator(subset)
        estimate_s = time.perf_counter() - start
        began, real, ended = ray.get(futures[name])
        rows.append({"check": name, "subset": ",".join(subset), "estimated_loss": estimate, "real_loss": real,
                     "relative_error": abs(estimate - real) / abs(real), "estimate_s": estimate_s,
                     "fine_tune_s": ended - began, "speedup": (ended - began) / max(estimate_s, 1e-9)})
    verification = pd.DataFrame(rows)
    atomic_write(out / "verification.csv", lambda tmp: verification.to_csv(tmp, index=False))
    from demoscope.reports import plot_bars

    plot_bars(list(table["source"]), table["score"], out / "scores.png",
              "random-ensemble score\n(estimated val loss, lower = better)",
              colors=["tab:red" if n else "tab:green" for n in table["noisy"]])
    _report(config, out, table, separation, selected, best, verification)
    console.print(verification[["check", "estimated_loss", "real_loss", "relative_error", "speedup"]].to_string(index=False))
    console.print(f"report: {out / 'report.md'}")
    return 0


def _report(config, out: Path, table, separation: float, selected, best, verification) -> None:
    from demoscope.reports import markdown_table

    task = (f"the noisy 5-digit-addition toy ({config.clean_sources} clean + {config.noisy_sources} noisy sources of "
            f"{config.samples_per_source} samples)" if config.task == "toy" else
            f"survey waves of `{config.train_file}` (model `{config.model}`), validated on `{config.val_file}`")
    noisy = (f"Clean sources score better than noisy ones in **{separation:.0%}** of (clean, noisy) pairs."
             if config.task == "toy" else "Lower scores: waves whose inclusion is estimated to help most.")
    text = f"""# Data-source selection (GradEx, first-order estimates)

Task: {task}; projection d={config.project_dim}; {config.n_subsets} random subsets.

## Random-ensemble scores (green clean, red noisy)

{noisy}

![scores](scores.png)

{markdown_table(table)}

## Greedy forward selection

Selected {len(selected)} sources: {', '.join(selected)} (estimated loss {best:.4f}); see `greedy.csv`.

## Estimated vs real fine-tunes ({config.fine_tune_steps} steps)

{markdown_table(verification[['check', 'estimated_loss', 'real_loss', 'relative_error', 'estimate_s', 'fine_tune_s', 'speedup']])}
"""
    atomic_write_text(out / "report.md", text)
    atomic_write_text(out / "metrics.json", json.dumps({"separation": separation, "selected": selected,
                                                        "verification": verification.to_dict(orient="records")}, indent=2))


JOB = Job(name="select", description=DESCRIPTION, config=SelectConfig, run=run)


def main(argv: list[str] | None = None) -> int:
    return main_for(JOB, argv)


if __name__ == "__main__":
    sys.exit(main())
