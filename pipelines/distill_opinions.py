"""Opinion distillation: a student fitted to a teacher's answer distributions, and how its group distances move.

    demoscope distill-opinions --train-file runs/prepare/opnqa_QA_train.parquet \\
        --test-file runs/prepare/opnqa_QA_test.parquet --teacher tiny:llama --teacher-adapter runs/train/adapter
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field

from demoscope.config import save_config
from demoscope.config.base import JobConfig, LetterLogprobs
from demoscope.errors import ConfigError
from demoscope.io import atomic_write, atomic_write_text
from demoscope.models.names import choose_backend
from demoscope.pipelines.command import Job, main_for
from demoscope.pipelines.evaluate import EvaluateConfig
from demoscope.pipelines.runtime import ACTOR_POOL_OPTIONS, init_ray
from demoscope.pipelines.train import TrainResult
from demoscope.pipelines.train_opinion import OpinionTrainConfig

SUMMARY = "fit a student to a teacher's option distributions; per-group WD of both to the humans"
DESCRIPTION = """\
Bias transfer for opinion models: the teacher (a model, optionally with a
SubPOP-tuned adapter) answers every prompt of the training split (Ray Data);
its option distributions replace the humans' as targets; a student is
fine-tuned on them with the opinion objective (Ray Train, forward KL); then
teacher and student are evaluated on the test split against the humans.
The report gives, per subpopulation, the teacher's and the student's mean
Wasserstein distance to the humans and how the student moved relative to
the teacher (does a distilled student keep, lose or amplify the teacher's
group-by-group fit?).

writes  OUT/targets/{train,val}.parquet (teacher targets), OUT/student/ (train outputs),
        OUT/eval-teacher/, OUT/eval-student/, OUT/per_group.csv, OUT/per_group.png, OUT/report.md

example demoscope distill-opinions --train-file runs/demo/prepare/opnqa_QA_train.parquet \\
            --test-file runs/demo/prepare/opnqa_QA_test.parquet --teacher-adapter runs/demo/train/adapter
"""


class OpinionDistillConfig(JobConfig):
    """``demoscope distill-opinions``: fit a small student to a teacher's option distributions; who moves where."""

    train_file: str = Field(..., description="prepared opinion split the teacher answers and the student learns from")
    val_file: str | None = Field(None, description="prepared validation split (also relabelled by the teacher)")
    test_file: str = Field(..., description="prepared split both are evaluated on against the humans")
    teacher: str = Field("tiny:llama", description="teacher model (id, path, tiny:...)")
    teacher_adapter: str | None = Field(None, description="the teacher's LoRA adapter (e.g. a SubPOP-tuned one)")
    student: str = Field("tiny:llama", description="student model (id, path, tiny:...)")
    epochs: int = Field(3, ge=1, description="student epochs")
    lr: float = Field(3e-3, gt=0, description="student learning rate")
    batch_size: int = Field(32, ge=1, description="student batch size per worker")
    num_workers: int = Field(2, ge=1, description="Ray Train workers for the student")
    use_gpu: bool = Field(False, description="GPUs for teacher scoring and the student")
    backend: Literal["auto", "transformers", "vllm"] = Field(
        "auto", description="the teacher's and the evaluations' engine; auto: vLLM with use_gpu if installed")
    letter_logprobs: LetterLogprobs = "auto"
    n_boot: int = Field(200, ge=10, description="bootstrap resamples of the evaluation")
    out: str = Field("runs/distill-opinions", description="output folder")


class TeacherActor:
    """Ray Data UDF: the teacher's distribution over each row's shown options, as the row's new target."""

    def __init__(self, model: str, adapter: str | None, backend: str, letter_logprobs: str = "auto"):
        from demoscope.models.names import resolve_model
        from demoscope.models.scoring import option_scorers

        (self.scorer,) = option_scorers(resolve_model(model), adapter, backend,
                                        letter_logprobs=letter_logprobs).values()

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from demoscope.distill import teacher_option_dists, teacher_option_targets

        for column in ("output_dist", "ordinal"):
            batch[column] = [list(v) for v in batch[column]]
        return teacher_option_targets(batch, teacher_option_dists(batch, self.scorer))


def _relabel(config: OpinionDistillConfig, split: str, out: Path) -> Path:
    import ray.data

    from demoscope.training.opinion_data import read_prepared

    frame = read_prepared(split)
    relabelled = ray.data.from_pandas(frame).map_batches(
        TeacherActor, fn_constructor_kwargs={"model": config.teacher, "adapter": config.teacher_adapter,
                                             "backend": choose_backend(config.backend, config.use_gpu),
                                             "letter_logprobs": config.letter_logprobs},
        batch_size=256, batch_format="pandas", concurrency=1, num_cpus=1, num_gpus=1 if config.use_gpu else 0,
        **ACTOR_POOL_OPTIONS,
    ).to_pandas()
    # Plain columns: Arrow-backed list dtypes would not survive pandas' Parquet metadata round trip.
    relabelled = pd.DataFrame({c: [list(v) if hasattr(v, "__len__") and not isinstance(v, str) else v
                                   for v in relabelled[c].tolist()] for c in relabelled.columns})
    atomic_write(out, lambda tmp: relabelled.to_parquet(tmp, index=False))
    return out


@dataclass(frozen=True)
class OpinionDistillResult:
    """An opinion distillation: the student's adapter and, per group, both systems' mean distance to the humans."""

    out: Path
    student: TrainResult
    per_group: pd.DataFrame  # attribute, group, teacher, student, change (student - teacher; negative = closer)


def run(config: OpinionDistillConfig, address: str | None = None, verbose: bool = False) -> int:
    """The ``demoscope distill-opinions`` command: :func:`distill_opinions`, exit code 0."""
    distill_opinions(config, address, verbose)
    return 0


def distill_opinions(config: OpinionDistillConfig, address: str | None = None,
                     verbose: bool = False) -> OpinionDistillResult:
    """Relabel with the teacher, fit the student, score both against the humans; the Python API."""
    from rich.console import Console

    from demoscope.models.names import resolve_model
    from demoscope.pipelines import evaluate as evaluate_job
    from demoscope.pipelines import train as train_job

    for path in filter(None, [config.train_file, config.val_file, config.test_file]):
        if not Path(path).exists():
            raise ConfigError(f"prepared split {path} does not exist (write it with `demoscope prepare`)")
    if config.teacher_adapter and not (Path(config.teacher_adapter) / "adapter_config.json").exists():
        raise ConfigError(f"--teacher-adapter {config.teacher_adapter} has no adapter_config.json")
    out = Path(config.out).resolve()
    save_config(config, out / "config.yaml")
    console = Console(soft_wrap=True)
    init_ray(address, verbose)
    for name in (config.teacher, config.student):
        resolve_model(name)
    console.rule("1. the teacher answers the training prompts (Ray Data)")
    train_targets = _relabel(config, config.train_file, out / "targets" / "train.parquet")
    val_targets = _relabel(config, config.val_file, out / "targets" / "val.parquet") if config.val_file else None

    console.rule("2. the student learns the teacher's distributions (Ray Train)")
    student = OpinionTrainConfig(objective="opinion-kl", model=config.student, train_file=str(train_targets),
                                 val_file=str(val_targets) if val_targets else None, out=str(out / "student"),
                                 epochs=config.epochs, lr=config.lr, batch_size=config.batch_size,
                                 num_workers=config.num_workers, use_gpu=config.use_gpu, scheduler="cosine")
    trained = train_job.train(student, address, verbose)

    console.rule("3. teacher and student against the humans on the test split")
    runs = {"teacher": (config.teacher, config.teacher_adapter), "student": (config.student, str(trained.artifact))}
    per_group = []
    for system, (model, adapter) in runs.items():
        evaluation = EvaluateConfig(test_file=config.test_file, model=model, adapter=adapter, compare_base=False,
                                    out=str(out / f"eval-{system}"), n_boot=config.n_boot, use_gpu=config.use_gpu,
                                    backend=config.backend, letter_logprobs=config.letter_logprobs)
        groups = pd.read_parquet(evaluate_job.evaluate(evaluation, address, verbose).predictions)
        column = "wd_tuned" if adapter else "wd_model"
        per_group.append(groups.groupby(["attribute", "group"])[column].mean().rename(system))
    table = pd.concat(per_group, axis=1).reset_index()
    table["change"] = table["student"] - table["teacher"]
    table = table.sort_values("change").reset_index(drop=True)
    atomic_write(out / "per_group.csv", lambda tmp: table.to_csv(tmp, index=False))
    _plot(table, out / "per_group.png")
    _report(config, out, table)
    console.print(table.to_string(index=False))
    console.print(f"report: {out / 'report.md'}")
    return OpinionDistillResult(out, trained, table)


def _plot(table: pd.DataFrame, path: Path) -> None:
    from demoscope.reports import plot_group_wasserstein

    long = table.melt(id_vars=["attribute", "group"], value_vars=["teacher", "student"], var_name="system",
                      value_name="mean")
    plot_group_wasserstein(long.assign(low=long["mean"], high=long["mean"]), ["teacher", "student"], path)


def _report(config: OpinionDistillConfig, out: Path, table: pd.DataFrame) -> None:
    from demoscope.reports import markdown_table

    closer = int((table["change"] < 0).sum())
    text = f"""# Opinion distillation: does the student keep the teacher's fit to each group?

Teacher `{config.teacher}`{f" + adapter `{config.teacher_adapter}`" if config.teacher_adapter
                           else ""}; student `{config.student}`
fitted to the teacher's option distributions on `{config.train_file}` ({config.epochs} epochs, forward KL).
Mean Wasserstein distance to the humans on `{config.test_file}` (lower = closer); change = student - teacher.
The student is closer to the humans than its teacher for {closer} of {len(table)} groups.

{markdown_table(table)}

![per group](per_group.png)
"""
    atomic_write_text(out / "report.md", text)


JOB = Job(name="distill-opinions", description=DESCRIPTION, config=OpinionDistillConfig, run=run)


def main(argv: list[str] | None = None) -> int:
    return main_for(JOB, argv)


if __name__ == "__main__":
    sys.exit(main())
