"""Score a model on a prepared test set with Ray Data batch inference, then report Wasserstein distances.

Ray Data streams the test set through scoring actors (each holds the model
once: Transformers on CPU, vLLM on GPU, behind the same scorer protocol) and
writes per-row predictions to Parquet as they come, so 100k prompts need the
memory of one block. The report reads back only the distance columns.

    demoscope evaluate --test-file runs/prepare/opnqa_QA_test.parquet --model tiny:llama \\
        --adapter runs/train/adapter --out runs/eval
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd

from demoscope.config import EvaluateConfig, save_config
from demoscope.errors import ConfigError
from demoscope.io import atomic_write_text
from demoscope.models.names import choose_backend
from demoscope.pipelines.command import Job, main_for
from demoscope.pipelines.runtime import init_ray

DESCRIPTION = """\
Score a model (optionally with a LoRA adapter) on a prepared test set the way
SubPOP evaluates: the probabilities of the option letters after "Answer:"
(with and without a leading space, summed, renormalised over the scored
options) are compared with the human distribution by the range-normalised
ordinal Wasserstein distance (WD). Baselines: uniform over the ordinal
options, and the base model with the adapter disabled.

reads   a prepared split (`demoscope prepare`: qkey, input_prompt, output_dist, attribute, group, ordinal)
writes  OUT/predictions/*.parquet (per row: distributions and WD of every system),
        OUT/report.md, OUT/metrics.json (mean WD overall and per subpopulation with
        bootstrap 95% intervals, relative gap reduction), OUT/wd_by_group.png,
        OUT/wd_histogram.png, OUT/config.yaml

weak-to-strong: --guide-model SMALL --guide-adapter SMALL_TUNED steers --model (large, untuned)
        with p ∝ p_large * (p_tuned / p_untuned)^beta and reports it against the large model
        alone and the small tuned model alone.

example demoscope evaluate --test-file runs/prepare/opnqa_QA_test.parquet --model tiny:llama \\
            --adapter runs/train/adapter --out runs/eval
        demoscope evaluate --test-file ... --model meta-llama/Llama-2-70b-hf \\
            --guide-model meta-llama/Llama-2-7b-hf --guide-adapter runs/train/adapter --guide-beta 1.0
        SubPOP-Eval exclusions: --config configs/evaluate/subpop-eval.yaml
"""


class OptionScoringActor:
    """A Ray Data UDF: holds a model (and its adapter) and scores blocks of prompts.

    In weak-to-strong mode (``guide_model``) it holds the large model and the
    small tuned/untuned pair, and adds the steered distribution computed from
    their three answers (no extra forward pass).
    """

    def __init__(self, model: str, adapter: str | None, backend: str, batch_size: int, compare_base: bool,
                 exclude: list[str], guide_model: str | None = None, guide_adapter: str | None = None,
                 guide_beta: float = 1.0):
        from demoscope.models.names import resolve_model
        from demoscope.models.scoring import option_scorers

        self.exclude = set(exclude)
        self.beta = guide_beta
        path = resolve_model(model)
        if guide_model is not None:
            self.scorers = self._guided(path, resolve_model(guide_model), guide_adapter, backend, batch_size)
        else:
            self.scorers = option_scorers(path, adapter, backend, batch_size, compare_base)

    @staticmethod
    def _guided(large_path, small_path, adapter: str, backend: str, batch_size: int) -> dict:
        """Scorers for the large model (vLLM on GPU) and the small pair (Transformers: small and cheap)."""
        from demoscope.models import TransformersOptionScorer, load_causal_lm

        if backend == "vllm":
            from demoscope.models.scoring import VLLMOptionScorer

            large = VLLMOptionScorer.create(large_path)
        else:
            large = TransformersOptionScorer(*load_causal_lm(large_path), batch_size)
        small, tokenizer = load_causal_lm(small_path, adapters={"tuned": adapter})
        return {"large": large, "small_tuned": TransformersOptionScorer(small, tokenizer, batch_size, adapter="tuned"),
                "small_untuned": TransformersOptionScorer(small, tokenizer, batch_size, adapter=None)}

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from demoscope.metrics.opinion import row_distances, uniform_distances
        from demoscope.models.weak_to_strong import reweight

        batch = batch[~batch["qkey"].isin(self.exclude)].reset_index(drop=True)
        for column in ("output_dist", "ordinal"):
            batch[column] = [list(ast.literal_eval(v)) if isinstance(v, str) else list(v) for v in batch[column]]
        n_options = [len(o) for o in batch["ordinal"]]
        out = batch[["qkey", "attribute", "group", "output_dist", "ordinal"]].copy()
        for name, scorer in self.scorers.items():
            out[f"dist_{name}"] = [d.tolist() for d in scorer.score(list(batch["input_prompt"]), n_options)]
            out[f"wd_{name}"] = row_distances(out, f"dist_{name}")
        if "small_untuned" in self.scorers:
            out["dist_steered"] = [reweight(*dists, self.beta).tolist() for dists in
                                   zip(out["dist_large"], out["dist_small_tuned"], out["dist_small_untuned"])]
            out["wd_steered"] = row_distances(out, "dist_steered")
        out["wd_uniform"] = uniform_distances(out)
        return out


def systems_for(config: EvaluateConfig) -> list[str]:
    """Report order: the system under test first, then its baselines."""
    if config.guide_model is not None:
        return ["steered", "large", "small_tuned", "small_untuned", "uniform"]
    if config.adapter is None:
        return ["model", "uniform"]
    return ["tuned", "base", "uniform"] if config.compare_base else ["tuned", "uniform"]


def run(config: EvaluateConfig, address: str | None = None, verbose: bool = False) -> int:
    """Score the test set on Ray Data, then write the report."""
    test = Path(config.test_file)
    if not test.exists():
        raise ConfigError(f"test file {test} does not exist (write it with `demoscope prepare`)")
    if config.adapter and not (Path(config.adapter) / "adapter_config.json").exists():
        raise ConfigError(f"adapter folder {config.adapter} has no adapter_config.json (expected OUT/adapter of `demoscope train`)")
    if config.guide_model is not None:
        if config.adapter is not None:
            raise ConfigError("weak-to-strong mode steers the large --model itself: give --guide-adapter, not --adapter")
        if not config.guide_adapter or not (Path(config.guide_adapter) / "adapter_config.json").exists():
            raise ConfigError(f"--guide-model needs --guide-adapter, the small model's tuned LoRA folder with "
                              f"adapter_config.json (got {config.guide_adapter!r})")
    out = Path(config.out).resolve()
    save_config(config, out / "config.yaml")
    backend = choose_backend(config.backend, config.use_gpu)
    ray = init_ray(address, verbose)
    import ray.data

    from demoscope.models.names import resolve_model

    for name in filter(None, [config.model, config.guide_model]):
        resolve_model(name)  # build a tiny model once, before the actors start
    reader = ray.data.read_parquet if test.suffix == ".parquet" else ray.data.read_csv
    dataset = reader(str(test.resolve())).map_batches(
        OptionScoringActor,
        fn_constructor_kwargs={"model": config.model, "adapter": str(Path(config.adapter).resolve()) if config.adapter else None,
                               "backend": backend, "batch_size": config.batch_size, "compare_base": config.compare_base,
                               "exclude": config.exclude_questions or [], "guide_model": config.guide_model,
                               "guide_adapter": str(Path(config.guide_adapter).resolve()) if config.guide_adapter else None,
                               "guide_beta": config.guide_beta},
        batch_size=max(256, config.batch_size),
        batch_format="pandas",
        concurrency=config.replicas,
        num_gpus=1 if config.use_gpu else 0,
        num_cpus=1,
    )
    staging = Path(tempfile.mkdtemp(prefix=".predictions.", dir=out))
    dataset.write_parquet(str(staging))
    predictions_dir = out / "predictions"
    shutil.rmtree(predictions_dir, ignore_errors=True)
    os.replace(staging, predictions_dir)
    return report(config, predictions_dir, out)


def report(config: EvaluateConfig, predictions_dir: Path, out: Path) -> int:
    """Summaries, plots and a Markdown report from the written predictions."""
    from rich.console import Console

    from demoscope.metrics.opinion import summarize
    from demoscope.reports import markdown_table, plot_group_wasserstein, plot_wd_histogram

    systems = systems_for(config)
    columns = ["qkey", "attribute", "group", *[f"wd_{s}" for s in systems]]
    predictions = pd.read_parquet(predictions_dir, columns=columns)
    if predictions.empty:
        raise ConfigError(f"no rows left to score in {config.test_file} (all excluded?)")
    summary = summarize(predictions, systems, n_boot=config.n_boot, seed=config.seed)
    plot_group_wasserstein(summary["per_group"], systems, out / "wd_by_group.png")
    plot_wd_histogram(predictions, systems, out / "wd_histogram.png")
    wide = summary["per_group"].pivot_table(index=["attribute", "group"], columns="system", values="mean", sort=False)
    wide = wide[systems].reset_index()
    metrics = {
        "rows": len(predictions), "questions": int(predictions["qkey"].nunique()),
        "non_ordinal_rows": int(predictions[f"wd_{systems[0]}"].isna().sum()),
        "overall": summary["overall"].to_dict(orient="records"),
        "gap_reduction": summary["gap_reduction"],
        "per_group": summary["per_group"].to_dict(orient="records"),
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    gaps = "\n".join(f"- relative WD reduction of `{systems[0]}` against `{k}`: **{v:.1%}**" for k, v in summary["gap_reduction"].items())
    text = f"""# Opinion evaluation

Test set `{config.test_file}`: {metrics['rows']:,} rows, {metrics['questions']} questions
({metrics['non_ordinal_rows']} rows of non-ordinal questions have no WD and are skipped).
Model `{config.model}`{f", adapter `{config.adapter}`" if config.adapter else ""}.{_guide_note(config)}

## Mean Wasserstein distance (lower is better, 95% bootstrap interval)

{markdown_table(summary['overall'].assign(n=summary['overall']['n'].astype(int)))}

{gaps}

## Per subpopulation

{markdown_table(wide)}

![WD by group](wd_by_group.png)

![WD histogram](wd_histogram.png)
"""
    atomic_write_text(out / "report.md", text)
    console = Console(soft_wrap=True)
    for row in summary["overall"].itertuples():
        console.print(f"{row.system:>8}: mean WD {row.mean:.4f}  [{row.low:.4f}, {row.high:.4f}]")
    for other, value in summary["gap_reduction"].items():
        console.print(f"relative WD reduction vs {other}: {value:.1%}")
    console.print(f"report: {out / 'report.md'}")
    return 0


def _guide_note(config: EvaluateConfig) -> str:
    if config.guide_model is None:
        return ""
    return (f"\nWeak-to-strong: `steered` = `large` reweighted by `{config.guide_model}` with adapter "
            f"`{config.guide_adapter}` against itself without it, beta {config.guide_beta:g} "
            "(p ∝ p_large · (p_tuned / p_untuned)^beta).")


JOB = Job(name="evaluate", description=DESCRIPTION, config=EvaluateConfig, run=run)


def main(argv: list[str] | None = None) -> int:
    return main_for(JOB, argv)


if __name__ == "__main__":
    sys.exit(main())
