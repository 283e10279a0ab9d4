"""One pydantic config per job. Field docs double as the ``--help`` text of their flags."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


# How the vLLM backend reads answer letters (evaluate, distill-opinions, serve); see demoscope.models.vllm_scoring.
LetterLogprobs = Annotated[Literal["auto", "exact", "top-k"], Field(
    description="vLLM only: exact letter log-probs (logprob_token_ids), or the top-k ones where a letter outside "
                "counts 0 (SubPOP's rule with top_k=128); auto: exact where the installed vLLM can")]

class JobConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AggregateConfig(JobConfig):
    """Survey files -> weighted answer distributions per (question, subpopulation)."""

    inputs: list[str] = Field(default_factory=list, description="survey files (.sav/.dta/.csv/.parquet) or folders of them")
    out: str = Field("runs/aggregate", description="output folder")
    subpopulations: str = Field("22", description="'22' or '61' (SubPOP's tables) or a CSV with attribute,group")
    codebook: str | None = Field(None, description="codebook JSON in SubPOP's refined_qkey_dict.json format")
    spec: str | None = Field(None, description="survey spec YAML for surveys other than Pew ATP / GSS")
    questions: list[str] | None = Field(None, description="only these question keys (default: every question)")
    keep_going: bool = Field(False, description="exit 0 even when a whole file failed")
    progress: bool = Field(True, description="show a progress bar")


class SynthSurveyConfig(JobConfig):
    """A seeded synthetic survey world: ATP-style .sav waves and a GSS-style .dta."""

    out: str = Field("runs/synthetic", description="output folder")
    waves: int = Field(4, ge=1, description="number of ATP waves")
    respondents: int = Field(2000, ge=10, description="respondents per file")
    seed: int = Field(0, description="random seed (same seed, same world)")
    gss: bool = Field(True, description="also write a GSS-style GSS2022.dta")
    questions_per_wave: int | None = Field(None, ge=1, description="cap on questions per file")


class SurveyPairsConfig(JobConfig):
    """``demoscope survey-pairs``: DPO preference pairs from what some groups answer over others."""

    split: str = Field(..., description="a prepared split (from `demoscope prepare`), CSV or Parquet")
    toward: list[str] = Field(["POLPARTY=Democrat", "POLIDEOLOGY=Liberal"], description="ATTRIBUTE=group to prefer")
    away: list[str] = Field(["POLPARTY=Republican", "POLIDEOLOGY=Conservative"], description="ATTRIBUTE=group to move from")
    min_gap: float = Field(0.02, ge=0, description="skip questions where the sides differ by less")
    out: str = Field("runs/pairs/left.jsonl", description="output JSONL (prompt, chosen, rejected)")


class GenerateConfig(JobConfig):
    """``demoscope generate``: weak-to-strong decoding over a prompt set (Ray Data), with gold rewards."""

    prompts: str = Field(..., description="prompt file: .txt (one per line), .jsonl/.csv/.parquet with a `prompt` column")
    limit: int | None = Field(None, ge=1, description="use the first N prompts (the seed: 200)")
    model: str = Field("tiny:llama", description="the large model (Hugging Face id, local path, tiny:llama)")
    large_template: str = Field("{raw_prompt}", description="the large model's prompt ({raw_prompt} is the prompt)")
    tuned: str | None = Field(None, description="small tuned model (id/path); with tuned_adapter, the base it adapts")
    tuned_adapter: str | None = Field(None, description="LoRA adapter of the small tuned model (untuned = adapter off)")
    untuned: str | None = Field(None, description="small untuned model (default with tuned_adapter: the same base)")
    small_template: str = Field("{raw_prompt}", description="the small models' prompt")
    reward_model: str | None = Field(None, description="gold reward: a sequence classifier (positive - negative logit)")
    positive_label: str = Field("1", description="the classifier's positive label (index or name)")
    negative_label: str = Field("0", description="the classifier's negative label (index or name)")
    methods: list[str] = Field(["base", "bon:16", "bon:32", "cbs:4,4,5", "eft:1.0"],
                               description="decoding methods: base, bon:N, cbs:W,K,L, eft:BETA")
    temperature: float = Field(0.7, ge=0, description="sampling temperature (0: greedy)")
    top_k: int = Field(50, ge=0, description="top-k (0: off)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")
    max_new_tokens: int = Field(50, ge=1, description="response length cap")
    seed: int = Field(1, description="sampling seed (each prompt's seed derives from it and the prompt)")
    backend: Literal["auto", "transformers", "vllm"] = Field("auto", description="the large model's engine")
    use_gpu: bool = Field(False, description="one GPU per generation actor")
    replicas: int = Field(1, ge=1, description="generation actors")
    batch_size: int = Field(8, ge=1, description="prompts per Ray Data batch")
    out: str = Field("runs/generate", description="output folder")


class BiasConfig(JobConfig):
    """``demoscope bias``: gender and race bias of sentiment systems on the Equity Evaluation Corpus."""

    systems: dict[str, str] = Field(default_factory=dict, description="name=path: students, classifiers or causal LMs")
    variant: Literal["paper", "seed"] = Field("paper", description="gender pairs: paper 1,584 (name means) or seed 1,440")
    alpha: float = Field(0.05, gt=0, lt=1, description="significance level (Bonferroni-corrected)")
    out: str = Field("runs/bias", description="output folder")


class DistillConfig(JobConfig):
    """``demoscope distill``: teacher soft labels, baseline and distilled students, and their bias on the EEC."""

    train_file: str | None = Field(None, description="student training texts (text, label); or use --synthetic")
    test_file: str | None = Field(None, description="held-out texts (text, label) for accuracy")
    synthetic: int = Field(0, ge=0, description="rows of a seeded synthetic sentiment set instead of files")
    planted_bias: Literal["race", "gender", "none"] = Field("race", description="synthetic: bias planted in the teacher's data")
    teacher: str = Field("train", description="'train' (a CNN teacher on --teacher-file / the biased synthetic set), "
                                               "a causal LM (few-shot), a classifier, or a saved student")
    teacher_file: str | None = Field(None, description="teacher's training texts when teacher=train (default: synthetic)")
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


class SelectConfig(JobConfig):
    """``demoscope select``: GradEx data-source selection (the noisy-addition toy, or survey waves) on Ray."""

    task: Literal["toy", "subpop"] = Field("toy", description="toy: noisy addition; subpop: waves or topics of a prepared split")
    train_file: str | None = Field(None, description="subpop: prepared training split whose rows form the sources")
    val_file: str | None = Field(None, description="subpop: prepared split whose loss the selection minimises")
    sources: Literal["wave", "topic"] = Field("wave", description="subpop: one source per survey wave, or per question topic")
    topics: str | None = Field(None, description="subpop --sources topic: YAML topic: [regex, ...] or CSV qkey,topic "
                               "(default: the built-in taxonomy)")
    target_groups: list[str] = Field(default_factory=list, description="subpop: validate only on these groups "
                                     "(name or ATTRIBUTE=name; repeatable)")
    target_questions: list[str] = Field(default_factory=list, description="subpop: validate only on these question "
                                        "keys or patterns like GUN* (repeatable)")
    model: str = Field("tiny:llama", description="subpop: the model (id, path, tiny:llama)")
    adapter: str | None = Field(None, description="subpop: meta-trained LoRA adapter (default: meta-train one briefly)")
    meta_steps: int = Field(100, ge=1, description="steps of meta-training when no adapter is given")
    verify_epochs: int = Field(2, ge=1, description="subpop: epochs of each verification run of the train job")
    verify_lr: float = Field(5e-3, gt=0, description="subpop: learning rate of each verification run")
    verify_workers: int = Field(1, ge=1, description="subpop: Ray Train workers of each verification run")
    verify_batch_size: int | None = Field(None, ge=1, description="subpop: examples per worker per step of each "
                                          "verification run (default: the gradient batch, 32; a real model on CPU wants ~8)")

    clean_sources: int = Field(6, ge=1, description="toy: sources with correct answers")
    noisy_sources: int = Field(4, ge=0, description="toy: sources with random answers")
    samples_per_source: int = Field(16, ge=2, description="toy: samples per source")
    project_dim: int = Field(200, ge=8, description="projected gradient dimension d")
    n_subsets: int = Field(60, ge=2, description="random subsets for the ensemble scores (one Tune trial each)")
    subset_size: float = Field(0.5, gt=0, description="sources per random subset (a fraction, or a count if >= 1)")
    verify: int = Field(2, ge=0, description="random subsets fine-tuned for real, besides the selected one")
    fine_tune_steps: int = Field(40, ge=1, description="toy: steps of each real fine-tune")
    max_concurrent_trials: int = Field(2, ge=1, description="subset trials (and gradient actors) at once")
    seed: int = Field(0, description="seed of the toy, the projection and the subsets")
    loss_weighting: Literal["sample", "token"] = Field(
        "sample", description="validation loss: each sample's token mean averaged over samples (GradEx's reference), "
                              "or averaged over all tokens (long answers weigh more)")
    out: str = Field("runs/select", description="output folder")

    @model_validator(mode="after")
    def _survey_options_need_the_survey_task(self) -> SelectConfig:
        if self.task == "toy":
            given = [name for name in ("train_file", "val_file", "adapter", "topics", "target_groups", "target_questions")
                     if getattr(self, name)] + (["sources"] if self.sources != "wave" else [])
            if given:
                raise ValueError(f"{', '.join(given)} apply to task=subpop (the toy makes its own data); add --task subpop")
        return self


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


class SweepConfig(JobConfig):
    """``demoscope sweep``: a Ray Tune search over a training job's settings, one Ray Train run per trial."""

    job: Literal["train"] = Field("train", description="the training job to sweep")
    base: str | None = Field(None, description="the job's YAML config every trial starts from")
    set: list[str] = Field(default_factory=list, description="key=value settings on top of --base (repeatable)")
    space: str = Field(..., description="YAML search space: KEY: {grid|choice: [..]} or {uniform|loguniform|randint: [lo, hi]}")
    num_samples: int = Field(1, ge=1, description="samples of the space (grid axes multiply it)")
    scheduler: Literal["fifo", "asha"] = Field("fifo", description="asha: stop poor trials early")
    grace_period: int = Field(1, ge=1, description="ASHA: epochs every trial gets before it can be stopped")
    reduction_factor: int = Field(2, ge=2, description="ASHA: keep 1/reduction_factor at each rung")
    metric: str | None = Field(None, description="metric to optimise (default val_loss; eval_loss for dpo/sft)")
    mode: Literal["min", "max"] = Field("min", description="minimise or maximise the metric")
    max_concurrent_trials: int = Field(1, ge=1, description="trials running at once (each uses num_workers CPUs/GPUs)")
    out: str = Field("runs/sweep", description="output folder")
    seed: int = Field(0, description="seed of the random search")


class DemoConfig(JobConfig):
    """The end-to-end demo: synthesise, aggregate, prepare, fine-tune, evaluate, on a local Ray."""

    out: str = Field("runs/demo", description="output folder")
    waves: int = Field(3, ge=1, description="synthetic ATP waves")
    respondents: int = Field(2000, ge=100, description="respondents per wave")
    seed: int = Field(7, description="random seed")
    model: str = Field("tiny:llama", description="model to fine-tune: tiny:llama (random, seconds) or smollm2:135m "
                       "(real, pretrained; the demo then samples rows to finish in under 30 minutes on 2 cores)")
    epochs: int | None = Field(None, ge=1, description="fine-tuning epochs (default: the training preset's, 4 tiny / 2 real)")
    num_workers: int = Field(2, ge=1, description="Ray Train workers")
    max_train_rows: int | None = Field(None, ge=0, description="train on at most this many rows, whole questions "
                                       "sampled at random, and validate on a quarter as many (default: all for tiny models, 320 for real ones; 0: all)")
    max_test_rows: int | None = Field(None, ge=0, description="evaluate at most this many held-out rows, whole questions "
                                      "(default: all for tiny models, 200 for real ones; 0: all)")


class PrepareConfig(JobConfig):
    """Distributions -> SubPOP's steered fine-tuning CSVs, split by question."""

    distributions: str = Field(description="distributions.parquet from `demoscope aggregate`, or a SubPOP-format CSV")
    out: str = Field("runs/prepare", description="output folder")
    steering: Literal["QA", "BIO", "PORTRAY", "ALL"] | None = Field(
        None, description="steering type QA, BIO, PORTRAY or ALL (default: all four, as SubPOP writes them)"
    )
    train_ratio: float = Field(0.9, ge=0, le=1, description="share of questions in train")
    val_ratio: float = Field(0.1, ge=0, le=1, description="share of questions in val")
    test_ratio: float = Field(0.0, ge=0, le=1, description="share of questions in test (the rest after rounding)")
    seed: int = Field(42, description="seed of the question split and the row shuffle")
    shuffle: bool = Field(True, description="row-shuffle each split (SubPOP's default; --no-shuffle keeps sorted order)")
    exclude_questions: list[str] | None = Field(None, description="question keys to drop before splitting")


class EvaluateConfig(JobConfig):
    """Score a model (+ adapter) on a prepared split or a distributions file; Wasserstein report with baselines."""

    test_file: str = Field(..., description="what to score: a prepared split (.parquet or .csv from `demoscope prepare`) "
                           "or a distributions file (`demoscope aggregate`'s, or SubPOP-format CSV), told apart by its columns")
    steering: Literal["QA", "BIO", "PORTRAY"] = Field(
        "QA", description="steering template of the prompts rendered from a distributions file (ignored for a prepared split)")
    baselines_only: bool = Field(False, description="score only the baselines that need no model (uniform, other groups), "
                                 "without Ray, in seconds")
    model: str = Field("tiny:llama", description="Hugging Face id, local path, or tiny:llama / tiny:gpt2")
    adapter: str | None = Field(None, description="LoRA adapter folder (e.g. OUT/adapter of `demoscope train`)")
    out: str = Field("runs/evaluate", description="output folder")
    backend: Literal["auto", "transformers", "vllm"] = Field("auto", description="auto: vLLM on GPU if installed, else Transformers")
    batch_size: int = Field(16, ge=1, description="prompts per forward pass")
    letter_logprobs: LetterLogprobs = "auto"
    top_k: int = Field(128, ge=1, description="vLLM top-k mode: log-probs read per prompt (SubPOP: 128)")
    replicas: int = Field(1, ge=1, description="scoring actors (one GPU each with use_gpu)")
    use_gpu: bool = Field(False, description="give each scoring actor a GPU")
    compare_base: bool = Field(True, description="with an adapter, also score the base model (adapter disabled)")
    steerability: bool = Field(True, description="also score each question without its steering prefix and report, "
                               "per group, whether steering moved the answer closer to the group")
    exclude_questions: list[str] | None = Field(None, description="question keys left out of the report (e.g. SubPOP's high-relevance ones)")
    n_boot: int = Field(1000, ge=10, description="bootstrap resamples for the 95% intervals")
    bootstrap: Literal["question", "row"] = Field(
        "question", description="question: resample questions (clustered, the default); row: resample rows as if independent")
    seed: int = Field(0, description="bootstrap seed")
    guide_model: str | None = Field(None, description="weak-to-strong mode: a small model whose tuned/untuned pair steers --model")
    guide_adapter: str | None = Field(None, description="the small model's tuned LoRA adapter (untuned = adapter disabled)")
    guide_beta: float = Field(1.0, ge=0, description="steering strength: p ∝ p_large * (p_tuned / p_untuned)^beta")


class GenerationSettings(BaseModel):
    """``POST /v1/generate``: the large model and the small guide pair (as in ``demoscope generate``)."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="the large model (default: the server's model)")
    large_template: str = "{raw_prompt}"
    tuned: str | None = Field(None, description="small tuned model (with tuned_adapter: the base it adapts)")
    tuned_adapter: str | None = None
    untuned: str | None = None
    small_template: str = "{raw_prompt}"
    max_prompts: int = Field(8, ge=1, description="prompts per request")
    max_new_tokens: int = Field(256, ge=1, description="longest response a request may ask for")
    max_samples: int = Field(64, ge=1, description="most sampled continuations per prompt (N, or W x K)")


class ServeConfig(JobConfig):
    """``demoscope serve`` / ``serve run serve/config.yaml``: the opinions HTTP API on Ray Serve."""

    model: str = Field("tiny:llama", description="Hugging Face id, local path, or tiny:llama / tiny:gpt2")
    adapters: dict[str, str] = Field(default_factory=dict, description="LoRA adapters by name (e.g. adapters.subpop=runs/train/adapter)")
    default_adapter: str | None = Field(None, description="adapter used when a request names none (default: the base model)")
    backend: Literal["auto", "transformers", "vllm"] = Field("auto", description="auto: vLLM with use_gpu if installed, else Transformers")
    letter_logprobs: LetterLogprobs = "auto"
    use_gpu: bool = Field(False, description="one GPU per model replica")
    replica_cpus: float = Field(1.0, ge=0, description="CPUs reserved per model replica (opinions and generation)")
    host: str = Field("127.0.0.1", description="HTTP host of Serve's proxy")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port")
    max_items: int = Field(64, ge=1, description="items per request")
    max_options: int = Field(10, ge=2, le=26, description="options per item (SubPOP trains on A..J)")
    max_prompt_tokens: int = Field(2048, ge=16, description="longest prompt accepted, in tokens")
    batching: bool = Field(True, description="dynamic request batching in the model replicas")
    max_batch_size: int = Field(32, ge=1, description="prompts per batch")
    batch_wait_timeout_s: float = Field(0.01, ge=0, description="how long a batch waits to fill")
    min_replicas: int = Field(1, ge=1, description="autoscaling: fewest model replicas")
    max_replicas: int = Field(2, ge=1, description="autoscaling: most model replicas")
    target_ongoing_requests: int = Field(32, ge=1, description="autoscaling: ongoing prompts per replica to aim for")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="largest request body accepted (413 above), checked before parsing")
    max_queued_requests: int = Field(512, ge=1, description="prompts queued for the model deployment before requests get 503 (load shedding)")
    health_timeout_s: float = Field(2.0, gt=0, description="how long /healthz and a waiting request give the model to answer a ping before 503")
    blocking: bool = Field(True, description="keep serving until interrupted (false: deploy and return)")
    generation: GenerationSettings | None = Field(None, description="enable POST /v1/generate (generation.tuned=...)")


class AuditConfig(JobConfig):
    """``demoscope audit``: political-bias audit of a model and its adapters, offline."""

    model: str = Field("tiny:llama", description="Hugging Face id, local path, or tiny:llama")
    adapters: dict[str, str] = Field(default_factory=dict, description="systems to compare with the base model (adapters.left=PATH)")
    statements: str | None = Field(None, description="Political Compass style statements, one per line (not shipped)")
    test_file: str | None = Field(None, description="prepared survey split for opinion alignment (from `demoscope prepare`)")
    out: str = Field("runs/audit", description="output folder")
    temperature: float = Field(0.3, gt=0, description="sampling temperature (PoliTune: 0.3)")
    top_k: int = Field(200, ge=1, description="top-k sampling (PoliTune: 200)")
    max_new_tokens: int = Field(300, ge=1, description="answer length cap (PoliTune: 300)")
    batch_size: int = Field(8, ge=1, description="prompts per generation batch")
    seed: int = Field(0, description="sampling seed")
