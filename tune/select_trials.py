"""The Ray side of ``demoscope select``: gradient actors (Ray Data) and subset estimates as Ray Tune trials.

:mod:`demoscope.tune.select` composes these; the estimate itself is the
library's (:mod:`demoscope.selection.first_order`).
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd


class GradientActor:
    """Ray Data UDF: projected per-sample gradients of whole sources, written as one shard each."""

    def __init__(self, world, root: str):
        self.world, self.root = world, root

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from demoscope.selection import storage

        rows = []
        for source in batch["source"]:
            start = time.perf_counter()
            outputs, z = self.world.source_gradients(source)
            storage.write_shard(self.root, source, 0, z, outputs)
            rows.append({"source": source, "samples": len(outputs), "seconds": time.perf_counter() - start})
        return pd.DataFrame(rows)


def estimator(world, root: str):
    from demoscope.selection import storage
    from demoscope.selection.first_order import FirstOrderEstimator, FirstOrderSettings

    stored = storage.read_gradients(root, list(world.sources))
    settings = FirstOrderSettings(C=world.settings.C, scale=world.settings.scale, seed=world.settings.seed,
                                  loss_weighting=world.settings.loss_weighting)
    return FirstOrderEstimator(world.model, world.projection, {k: v.z for k, v in stored.items()}, world.val_batches,
                               settings, world.names)


def _trial(params: dict, world, root: str) -> dict:
    """One Tune trial: the first-order estimate of fine-tuning on ``params['subset']``."""
    import torch

    torch.set_num_threads(1)  # tiny model: threads only contend with the other trials
    start = time.perf_counter()
    loss = estimator(world, root)(params["subset"])
    return {"estimated_loss": loss, "seconds": time.perf_counter() - start}


class EstimateCache:
    """First-order estimates by subset (a frozenset of sources): each distinct subset is a Tune trial once.

    Random ensembles draw the same subset again, and greedy rounds meet
    subsets the ensemble already estimated; an estimate depends only on the
    subset, so those are looked up instead of re-run.
    """

    def __init__(self, world, root: str, out: Path, concurrent: int, console):
        self.world, self.root, self.out, self.concurrent, self.console = world, root, out, concurrent, console
        self.rows: dict[frozenset, dict] = {}

    def estimate(self, subsets: list[list[str]], name: str, label: str) -> pd.DataFrame:
        """``subsets`` (as given, repeats kept) with their estimates; only unseen subsets run,
        as one Tune experiment.
        """
        todo = list({frozenset(s): s for s in subsets if frozenset(s) not in self.rows}.values())
        distinct = len({frozenset(s) for s in subsets})
        self.console.print(f"{label}: {len(subsets)} subsets, {distinct} distinct, "
                           f"{len(todo)} to estimate as Tune trials "
                           f"({distinct - len(todo)} already estimated)")
        if todo:
            for row in _run_trials(todo, self.world, self.root, self.out, name, self.concurrent):
                self.rows[frozenset(row["subset"])] = row
        return pd.DataFrame([{**self.rows[frozenset(s)], "subset": list(s)} for s in subsets])

    def greedy_round(self, subsets: list[tuple]) -> list[float]:
        """The evaluator of :func:`~demoscope.selection.search.greedy_forward_selection`: a round as one experiment.

        Round ``r``'s subsets hold ``r + 1`` sources, which names the round.
        """
        done = len(subsets[0]) - 1
        trials = self.estimate([list(s) for s in subsets], f"greedy-{done}",
                               f"greedy round {done + 1}/{len(self.world.sources)}")
        return trials["estimated_loss"].tolist()


def _run_trials(subsets: list[list[str]], world, root: str, out: Path, name: str, concurrent: int) -> list[dict]:
    """One Tune experiment, a trial per subset: ``[{subset, estimated_loss, seconds}]``."""
    from ray import tune

    trainable = tune.with_resources(tune.with_parameters(_trial, world=world, root=root), {"cpu": 1})
    tuner = tune.Tuner(
        trainable, param_space={"subset": tune.grid_search(subsets)},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrent),
        run_config=tune.RunConfig(name=name, storage_path=str(out / "tune"), verbose=0),
    )
    results = tuner.fit()
    rows = [{"subset": r.config["subset"], "estimated_loss": r.metrics["estimated_loss"],
             "seconds": r.metrics["seconds"]}
            for r in results if r.error is None]
    if len(rows) != len(subsets):
        errors = [str(r.error) for r in results if r.error]
        raise RuntimeError(f"{len(subsets) - len(rows)} subset trials failed; first: {errors[:1]}")
    return rows
