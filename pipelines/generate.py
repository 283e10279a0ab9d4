"""Weak-to-strong decoding over a prompt set as a Ray Data batch job, with gold rewards and a report.

    demoscope generate --prompts prompts.txt --model gpt2-xl --tuned runs/dpo-small --untuned gpt2 \\
        --reward-model lvwerra/distilbert-imdb --out runs/generate
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field

from demoscope.config import save_config
from demoscope.config.base import GuideModels
from demoscope.errors import ConfigError
from demoscope.io import atomic_dir, atomic_write, atomic_write_text
from demoscope.models.names import choose_backend
from demoscope.pipelines.command import Job, main_for
from demoscope.pipelines.runtime import ACTOR_POOL_OPTIONS, check_resources, init_ray

SUMMARY = "weak-to-strong decoding (base, best-of-N, chunk beam search, EFT) with gold rewards, on Ray Data"
DESCRIPTION = """\
Steer a large model with a small tuned/untuned pair (weak-to-strong search):
base sampling, best-of-N, chunk-level beam search (W beams, K successors,
chunks of L tokens) and emulated fine-tuning (beta), ranked by the guidance
score sum(log p_tuned - log p_untuned) over the response. Prompts stream
through generation actors on Ray Data; each response gets the gold reward
(positive minus negative logit of a sequence classifier on prompt + response).

The large model runs in vLLM on GPUs (chunks sampled with n=K and prefix
caching) or Transformers (KV cache kept and reordered across chunks); the
small models run in Transformers and may use another tokenizer. EFT needs
all three models' per-step logits: Transformers only.

reads   --prompts (.txt one per line, or .jsonl/.csv/.parquet with `prompt`)
writes  OUT/generations/*.parquet (prompt, method, response, guidance, gold_reward,
        finish_reason, n_tokens), OUT/summary.csv, OUT/rewards.png, OUT/report.md,
        OUT/config.yaml

example demoscope generate --prompts prompts.txt --tuned tiny:llama --tuned-adapter runs/dpo/adapter \\
            --reward-model tiny:classifier --methods base --methods bon:4 --methods cbs:2,2,5
        the seed's setting: --config configs/w2s/imdb-gpt2-xl.yaml (GPU)
"""


class GenerateConfig(GuideModels):
    """``demoscope generate``: weak-to-strong decoding over a prompt set (Ray Data), with gold rewards."""

    model: str = Field("tiny:llama", description="the large model (Hugging Face id, local path, tiny:llama)")
    prompts: str = Field(..., description="prompt file: .txt (one per line), "
                         ".jsonl/.csv/.parquet with a `prompt` column")
    limit: int | None = Field(None, ge=1, description="use the first N prompts (the seed: 200)")
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


class GenerationActor:
    """A Ray Data UDF holding the large model, the guide pair and the reward model; one row per prompt x method."""

    def __init__(self, settings: dict):
        from demoscope.decoding import DecodingMethod, SamplingParams, load_models, load_reward_model
        from demoscope.models.names import resolve_model

        config = GenerateConfig.model_validate(settings)
        self.config = config
        self.methods = [DecodingMethod.parse(m) for m in config.methods]
        self.params = SamplingParams(temperature=config.temperature, top_k=config.top_k, top_p=config.top_p,
                                     max_new_tokens=config.max_new_tokens, seed=config.seed)
        self.large, self.guide = load_models(config.model, config.tuned, config.tuned_adapter, config.untuned,
                                             config.small_template, choose_backend(config.backend, config.use_gpu))
        self.reward = load_reward_model(resolve_model(config.reward_model)) if config.reward_model else None

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from demoscope.decoding import generate, gold_rewards

        prompts = [str(p) for p in batch["prompt"]]
        rows = []
        for method in self.methods:
            for g in generate(method, prompts, self.large, self.guide, self.params, self.config.large_template):
                rows.append({"prompt": g.prompt, "method": g.method, "response": g.text, "guidance": g.guidance,
                             "finish_reason": g.finish_reason, "n_tokens": len(g.token_ids)})
        out = pd.DataFrame(rows)
        if self.reward is not None:
            classifier, tokenizer = self.reward
            out["gold_reward"] = gold_rewards(classifier, tokenizer, list(out["prompt"]), list(out["response"]),
                                              positive=_label(self.config.positive_label),
                                              negative=_label(self.config.negative_label))
        else:
            out["gold_reward"] = float("nan")
        return out


def _label(value: str) -> int | str:
    return int(value) if value.lstrip("-").isdigit() else value


def check(config: GenerateConfig) -> None:
    """Fail before Ray starts on settings that cannot work."""
    from demoscope.decoding import DecodingMethod

    methods = [DecodingMethod.parse(m) for m in config.methods]  # a bad spelling is a ConfigError
    if not methods:
        raise ConfigError("no decoding methods: give --methods (base, bon:N, cbs:W,K,L, eft:BETA)")
    guided = [m.label for m in methods if m.name != "base"]
    if guided and config.tuned is None:
        raise ConfigError(f"{', '.join(guided)} need the small guide pair: "
                          f"give --tuned (and --untuned or --tuned-adapter)")
    if config.tuned is not None and config.untuned is None and not config.tuned_adapter:
        raise ConfigError("give --untuned (the small model before tuning) or --tuned-adapter (untuned = adapter off)")
    if config.tuned_adapter and not (Path(config.tuned_adapter) / "adapter_config.json").exists():
        raise ConfigError(f"--tuned-adapter {config.tuned_adapter} has no adapter_config.json")
    if choose_backend(config.backend, config.use_gpu) == "vllm" and any(m.name == "eft" for m in methods):
        raise ConfigError("eft mixes the three models' per-step logits, which vLLM does not expose: "
                          "run EFT with --backend transformers (a separate job)")
    if "{raw_prompt}" not in config.large_template or "{raw_prompt}" not in config.small_template:
        raise ConfigError("large_template and small_template must contain {raw_prompt}")


@dataclass(frozen=True)
class GenerationResult:
    """A generation run: every continuation (one row per prompt and method) and the per-method summary."""

    out: Path
    generations: pd.DataFrame  # prompt, method, response, guidance, finish_reason, n_tokens, gold_reward
    summary: pd.DataFrame  # per method: prompts, gold_reward with its 95% interval, guidance, tokens


def run(config: GenerateConfig, address: str | None = None, verbose: bool = False) -> int:
    """The ``demoscope generate`` command: :func:`generate_all`, exit code 0."""
    generate_all(config, address, verbose)
    return 0


def generate_all(config: GenerateConfig, address: str | None = None, verbose: bool = False) -> GenerationResult:
    """Generate on Ray Data, then summarise the rewards per method; the Python API of ``demoscope generate``."""
    from demoscope.decoding.prompt_sets import read_prompts

    check(config)
    prompts = read_prompts(config.prompts, config.limit)
    out = Path(config.out).resolve()
    config = config.model_copy(update={"tuned_adapter": str(Path(config.tuned_adapter).resolve())
                                                        if config.tuned_adapter else None})
    save_config(config, out / "config.yaml")
    init_ray(address, verbose)
    check_resources("generate", config.replicas, config.use_gpu, unit="the generation", flag="replicas")
    import ray.data

    from demoscope.models.names import resolve_model

    for name in filter(None, [config.model, config.tuned, config.untuned, config.reward_model]):
        resolve_model(name)  # build tiny models once, before the actors start
    blocks = [pd.DataFrame({"prompt": prompts[i:i + config.batch_size]})
              for i in range(0, len(prompts), config.batch_size)]
    dataset = ray.data.from_pandas(blocks)  # one block per batch, so actors share the work
    dataset = dataset.map_batches(
        GenerationActor, fn_constructor_kwargs={"settings": config.model_dump(mode="json")},
        batch_size=config.batch_size, batch_format="pandas", concurrency=config.replicas,
        num_gpus=1 if config.use_gpu else 0, num_cpus=1, **ACTOR_POOL_OPTIONS,
    )
    from rich.console import Console

    from demoscope.pipelines.progress import RowProgress

    console = Console(soft_wrap=True)
    console.print(f"generating for {len(prompts):,} prompts with {len(config.methods)} method(s); "
                  f"loading the models first")
    with (atomic_dir(out / "generations") as staging,
          RowProgress(len(prompts), "generating", console=console, unit="prompts") as progress):
        for i, part in enumerate(dataset.iter_batches(batch_format="pandas", batch_size=None)):
            part.to_parquet(staging / f"part-{i:05d}.parquet", index=False)
            progress.advance(len(part) // len(config.methods))  # one row per prompt and method
    return report(config, out)


def summarize(generations: pd.DataFrame, methods: list[str], seed: int = 0) -> pd.DataFrame:
    """Per method: prompts, mean gold reward with a bootstrap 95% interval, mean guidance, mean length."""
    from demoscope.metrics.bootstrap import bootstrap_ci

    rows = []
    for method in methods:
        part = generations[generations["method"] == method]
        mean, low, high = bootstrap_ci(part["gold_reward"].to_numpy(dtype=float), seed=seed)
        rows.append({"method": method, "prompts": len(part), "gold_reward": mean, "low": low, "high": high,
                     "guidance": part["guidance"].astype(float).mean(), "tokens": part["n_tokens"].mean()})
    return pd.DataFrame(rows)


def report(config: GenerateConfig, out: Path) -> GenerationResult:
    """Summarise OUT/generations per method: summary.csv, metrics.json, rewards.png and report.md."""
    from rich.console import Console

    from demoscope.decoding import DecodingMethod
    from demoscope.reports import markdown_table

    generations = pd.read_parquet(out / "generations")
    methods = [DecodingMethod.parse(m).label for m in config.methods]
    summary = summarize(generations, methods, seed=config.seed)
    atomic_write(out / "summary.csv", lambda tmp: summary.to_csv(tmp, index=False))
    metrics = {"prompts": int(generations["prompt"].nunique()), "methods": summary.to_dict(orient="records")}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=float))
    if summary["gold_reward"].notna().any():
        from demoscope.reports import plot_bars

        plot_bars(list(summary["method"]), summary["gold_reward"], out / "rewards.png", "mean gold reward (95% CI)",
                  errors=[summary["gold_reward"] - summary["low"], summary["high"] - summary["gold_reward"]])
    example = generations.iloc[0]
    guide = "no guide" if config.tuned is None else (
        f"guided by `{config.tuned}` + adapter `{config.tuned_adapter}` against the adapter off" if config.tuned_adapter
        and config.untuned in (None, config.tuned) else f"guided by `{config.tuned}` against `{config.untuned}`")
    text = f"""# Weak-to-strong generation

Large model `{config.model}` (prompt `{config.large_template}`), {guide};
{metrics['prompts']} prompts; temperature {config.temperature}, top-k {config.top_k}, top-p {config.top_p},
{config.max_new_tokens} new tokens, seed {config.seed}. Gold reward: `{config.reward_model}`.

## Mean gold reward per method (95% bootstrap interval)

{markdown_table(summary)}

{"![rewards](rewards.png)" if (out / "rewards.png").exists() else ""}

Example ({example['method']}): `{example['prompt']}` -> `{example['response']}`
"""
    atomic_write_text(out / "report.md", text)
    console = Console(soft_wrap=True)
    console.print(summary.to_string(index=False))
    console.print(f"report: {out / 'report.md'}")
    return GenerationResult(out, generations, summary)


JOB = Job(name="generate", description=DESCRIPTION, config=GenerateConfig, run=run)


def main(argv: list[str] | None = None) -> int:
    return main_for(JOB, argv)


if __name__ == "__main__":
    sys.exit(main())
