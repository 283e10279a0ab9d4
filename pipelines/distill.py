"""The distillation-bias study: teacher soft labels (Ray Data), students (Ray Train), bias on the EEC.

    demoscope distill --synthetic 2000 --out runs/distill          # the offline study with a planted bias
    demoscope distill --train-file imdb_train.parquet --test-file imdb_test.parquet \\
        --teacher meta-llama/Meta-Llama-3.1-8B-Instruct --use-gpu    # the seed's study
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from demoscope.config import save_config
from demoscope.config.base import JobConfig
from demoscope.errors import ConfigError
from demoscope.io import atomic_write, atomic_write_text
from demoscope.pipelines import bias as bias_job
from demoscope.pipelines.bias import BiasConfig, BiasResult
from demoscope.pipelines.command import Job, main_for
from demoscope.pipelines.runtime import ACTOR_POOL_OPTIONS, init_ray
from demoscope.pipelines.train_distill import DistillTrainConfig

SUMMARY = "teacher soft labels -> baseline and distilled students -> their bias on the EEC (Ray Data + Train)"
DESCRIPTION = """\
Does a student inherit its teacher's bias? (seed 004, reference part D)
1. teacher soft labels: the teacher scores every training text (Ray Data):
   a causal LM with a 3-shot prompt (softmax over the first tokens of
   "Negative"/"Positive"), a classifier, or a saved student -> label_0, label_1;
2. students (Ray Train, --objective distill): each kind trained twice, on the
   hard labels (baseline) and on the teacher's soft labels (bow/cnn:
   0.9*KL(teacher||student) + 0.1*CE; hf: T^2*KL at T=2);
3. accuracy on the test texts, and gender/race bias of teacher and students on
   the Equity Evaluation Corpus (paired t-tests, Bonferroni, sign split).

--synthetic N runs it offline: the students' data is unbiased, the teacher
(--teacher train: a CNN) learns from a set with a planted bias
(--planted-bias race: African-American names more often negative), so any
bias in the distilled student came from the teacher.

writes  OUT/data/, OUT/teacher/, OUT/soft_labels.parquet (text, label, label_0, label_1),
        OUT/students/<kind>-<baseline|distilled>/, OUT/accuracy.csv,
        OUT/bias/ (bias_statistics.csv/.md, gender_bias.png, race_bias.png), OUT/report.md

example demoscope distill --synthetic 2000 --students bow --students cnn --out runs/distill
"""


class DistillConfig(JobConfig):
    """``demoscope distill``: teacher soft labels, baseline and distilled students, and their bias on the EEC."""

    train_file: str | None = Field(None, description="student training texts (text, label); or use --synthetic")
    test_file: str | None = Field(None, description="held-out texts (text, label) for accuracy")
    synthetic: int = Field(0, ge=0, description="rows of a seeded synthetic sentiment set instead of files")
    planted_bias: Literal["race", "gender", "none"] = Field("race", description="synthetic: bias planted "
                                                            "in the teacher's data")
    teacher: str = Field("train", description="'train' (a CNN teacher on --teacher-file / the biased synthetic set), "
                                               "a causal LM (few-shot), a classifier, or a saved student")
    teacher_file: str | None = Field(None, description="teacher's training texts when teacher=train "
                                     "(default: synthetic)")
    students: list[str] = Field(["bow", "cnn"], description="student kinds: bow, cnn, hf (hf uses --student-model)")
    student_model: str = Field("tiny:classifier", description="the hf student's starting classifier")
    alpha: float = Field(0.9, ge=0, le=1, description="bow/cnn: weight of KL(teacher || student)")
    temperature: float = Field(2.0, gt=0, description="hf: T of the pure soft loss")
    epochs: int = Field(5, ge=1, description="student (and trained teacher) epochs")
    lr: float = Field(1e-3, gt=0, description="bow/cnn learning rate")
    hf_lr: float = Field(2e-5, gt=0, description="hf student learning rate (the seed's 2e-5)")
    batch_size: int = Field(32, ge=1, description="examples per worker per step")
    num_workers: int = Field(2, ge=1, description="Ray Train workers per student")
    use_gpu: bool = Field(False, description="GPUs for the teacher and students")
    variant: Literal["paper", "seed"] = Field("paper", description="gender pairs: paper 1,584 or seed 1,440")
    seed: int = Field(0, description="seed of the data, examples and students")
    out: str = Field("runs/distill", description="output folder")


class SoftLabelActor:
    """A Ray Data UDF: the teacher's p(negative), p(positive) for a block of texts (or few-shot prompts)."""

    def __init__(self, teacher: str, causal: bool):
        from demoscope.models.names import resolve_model

        self.causal = causal
        if causal:
            from demoscope.distill import TeacherLabeler

            self.labeler = TeacherLabeler.load(resolve_model(teacher))  # label words without a space (D.1)
        else:
            from demoscope.distill.systems import load_system

            self.system = load_system(teacher)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if self.causal:
            probs = self.labeler.probabilities(batch["prompt"].tolist())
        else:
            positive = self.system(batch["text"].tolist())
            probs = np.stack([1 - positive, positive], axis=1)
        from demoscope.distill import soft_label_frame

        return soft_label_frame(batch["text"].tolist(), batch["label"].tolist(), probs)


def _data(config: DistillConfig, out: Path) -> tuple[Path, Path | None, Path | None]:
    """(student train, test, teacher train) files; synthetic ones are written under OUT/data."""
    from demoscope.bias import synthetic_sentiment

    if config.synthetic:
        n = config.synthetic
        students = synthetic_sentiment(n, seed=config.seed, bias="none")
        teacher = synthetic_sentiment(n, seed=config.seed + 1, bias=config.planted_bias)
        cut = int(0.8 * n)
        files = {"train": students.iloc[:cut], "test": students.iloc[cut:], "teacher": teacher}
        for name, frame in files.items():
            atomic_write(out / "data" / f"{name}.parquet", lambda tmp, f=frame: f.to_parquet(tmp, index=False))
        return out / "data" / "train.parquet", out / "data" / "test.parquet", out / "data" / "teacher.parquet"
    if not config.train_file:
        raise ConfigError("no data: give --train-file (text, label) or --synthetic N")
    teacher_file = Path(config.teacher_file) if config.teacher_file else None
    return Path(config.train_file), Path(config.test_file) if config.test_file else None, teacher_file


def _train(config: DistillConfig, train_file: Path, out: Path, student: str, mode: str, address, verbose) -> Path:
    from demoscope.pipelines import train as train_job

    hf = student == "hf"
    settings = DistillTrainConfig(
        student=student, distill_mode=mode, model=config.student_model, train_file=str(train_file),
        out=str(out), epochs=config.epochs, lr=config.hf_lr if hf else config.lr,
        weight_decay=0.01 if hf else 0.0, batch_size=config.batch_size, num_workers=config.num_workers,
        use_gpu=config.use_gpu, alpha=config.alpha, temperature=config.temperature, seed=config.seed,
    )
    return train_job.train(settings, address, verbose).artifact


@dataclass(frozen=True)
class DistillResult:
    """A distillation study: the systems compared (name -> folder or model), their accuracy, and their bias."""

    out: Path
    systems: dict[str, str]  # teacher, then <student>-baseline and <student>-distilled
    agreement: float  # how often the teacher's soft labels agree with the hard labels
    accuracy: pd.DataFrame  # system, test_accuracy (empty without a test file)
    bias: BiasResult


def run(config: DistillConfig, address: str | None = None, verbose: bool = False) -> int:
    """The ``demoscope distill`` command: :func:`distill`, exit code 0."""
    distill(config, address, verbose)
    return 0


def distill(config: DistillConfig, address: str | None = None, verbose: bool = False) -> DistillResult:
    """Teacher soft labels, baseline and distilled students, their accuracy and EEC bias; the Python API."""
    from rich.console import Console

    from demoscope.distill.data import plain_labels, read_labelled, teacher_agreement

    bad = [s for s in config.students if s not in ("bow", "cnn", "hf")]
    if bad or not config.students:
        raise ConfigError(f"students must be bow, cnn or hf; got {config.students}")
    out = Path(config.out).resolve()
    save_config(config, out / "config.yaml")
    console = Console(soft_wrap=True)
    train_file, test_file, teacher_file = _data(config, out)
    train = read_labelled(train_file)
    init_ray(address, verbose)

    teacher = config.teacher
    if teacher == "train":
        if teacher_file is None:
            raise ConfigError("--teacher train needs --teacher-file (text, label) or --synthetic")
        console.rule("1a. train the teacher (a CNN on its own data)")
        teacher = str(_train(config, teacher_file, out / "teacher", "cnn", "baseline", address, verbose))

    console.rule("1. teacher soft labels (Ray Data)")
    from demoscope.distill.systems import is_causal_lm
    from demoscope.models.names import resolve_model

    causal = is_causal_lm(resolve_model(teacher))
    frame = train[["text", "label"]].copy()
    if causal:
        from demoscope.distill import few_shot_prompt, pick_examples

        examples = pick_examples(frame["text"].tolist(), frame["label"].tolist(), "train", seed=config.seed)
        frame["prompt"] = [few_shot_prompt(t, e) for t, e in zip(frame["text"], examples)]
    import ray.data

    from demoscope.pipelines.progress import RowProgress

    # Blocks of at most 256 rows, at least one per replica: a causal teacher is slow, so both CPUs label.
    replicas = 1 if config.use_gpu else max(1, min(2, int(ray.cluster_resources().get("CPU", 1))))
    chunk = max(1, min(256, -(-len(frame) // replicas)))
    dataset = ray.data.from_pandas([frame.iloc[i:i + chunk] for i in range(0, len(frame), chunk)]).map_batches(
        SoftLabelActor, fn_constructor_kwargs={"teacher": teacher, "causal": causal}, batch_size=chunk,
        batch_format="pandas", concurrency=replicas, num_cpus=1, num_gpus=1 if config.use_gpu else 0,
        **ACTOR_POOL_OPTIONS,
    )
    parts = []
    with RowProgress(len(frame), f"teacher labels ({teacher})", console=console) as progress:
        for part in dataset.iter_batches(batch_format="pandas", batch_size=None):
            parts.append(part)
            progress.advance(len(part))
    # row order may differ from the input's: training does not care
    labels = plain_labels(pd.concat(parts, ignore_index=True))
    soft_file = out / "soft_labels.parquet"
    atomic_write(soft_file, lambda tmp: labels.to_parquet(tmp, index=False))
    agreement = teacher_agreement(labels)
    console.print(f"teacher soft labels for {len(labels):,} texts; agrees with the hard labels on {agreement:.1%}")

    console.rule("2. students: baseline (hard labels) and distilled (teacher's soft labels)")
    systems = {"teacher": teacher}
    for kind in config.students:
        systems[f"{kind}-baseline"] = str(_train(config, train_file, out / "students" / f"{kind}-baseline", kind,
                                                 "baseline", address, verbose))
        systems[f"{kind}-distilled"] = str(_train(config, soft_file, out / "students" / f"{kind}-distilled", kind,
                                                  "tempered" if kind == "hf" else "distill", address, verbose))

    console.rule("3. accuracy and bias on the Equity Evaluation Corpus")
    from demoscope.distill.systems import load_system

    accuracy = pd.DataFrame(columns=["system", "test_accuracy"])
    if test_file is not None:
        test = read_labelled(test_file)
        accuracy = pd.DataFrame([{"system": name, "test_accuracy": float(
            ((load_system(path)(test["text"].tolist()) > 0.5) == test["label"].to_numpy()).mean())}
            for name, path in systems.items()])
        atomic_write(out / "accuracy.csv", lambda tmp: accuracy.to_csv(tmp, index=False))
    bias = bias_job.bias(BiasConfig(systems=systems, out=str(out / "bias"), variant=config.variant, alpha=0.05))
    _report(config, out, accuracy, bias.overall, agreement)
    console.print(accuracy.to_string(index=False))
    console.print(bias.overall[bias_job.VERDICT_COLUMNS].to_string(index=False))
    console.print(f"report: {out / 'report.md'}")
    return DistillResult(out, systems, agreement, accuracy, bias)


def _report(config: DistillConfig, out: Path, accuracy: pd.DataFrame, overall: pd.DataFrame, agreement: float) -> None:
    from demoscope.reports import markdown_table

    bias = overall[["system", "comparison", "group_a", "group_b", "mean_delta", "p_bonferroni", "verdict"]]
    planted = (f"teacher data with a planted {config.planted_bias} bias, student data without"
               if config.teacher == "train" else "no planted bias: the teacher is not trained here")
    data = f"synthetic ({config.synthetic} rows; {planted})" if config.synthetic else f"`{config.train_file}`"
    text = f"""# Bias transfer in distillation

Data: {data}. Teacher: `{config.teacher}`; its soft labels agree with the hard labels on {agreement:.1%}.
Students: {', '.join(config.students)}, each trained on the hard labels (baseline) and distilled
(alpha {config.alpha}; hf: T^2 KL at T={config.temperature}).

## Test accuracy

{markdown_table(accuracy) if len(accuracy) else "(no --test-file)"}

## Bias on the Equity Evaluation Corpus (mean difference group_a - group_b of p(positive))

{markdown_table(bias)}

![gender](bias/gender_bias.png)

![race](bias/race_bias.png)

Details per subset and the sign split: `bias/bias_statistics.md`.
"""
    atomic_write_text(out / "report.md", text)


JOB = Job(name="distill", description=DESCRIPTION, config=DistillConfig, run=run)


def main(argv: list[str] | None = None) -> int:
    return main_for(JOB, argv)


if __name__ == "__main__":
    sys.exit(main())
