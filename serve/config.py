"""The settings of ``demoscope serve`` and of ``serve run serve/config.yaml`` (the application builder reads them)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from demoscope.config.base import GuideModels, JobConfig, LetterLogprobs


class GenerationSettings(GuideModels):
    """``POST /v1/generate``: the large model and the small guide pair (as in ``demoscope generate``), and limits."""

    model: str | None = Field(None, description="the large model (default: the server's model)")
    max_prompts: int = Field(8, ge=1, description="prompts per request")
    max_new_tokens: int = Field(256, ge=1, description="longest response a request may ask for")
    max_samples: int = Field(64, ge=1, description="most sampled continuations per prompt (N, or W x K)")


class ServeConfig(JobConfig):
    """``demoscope serve`` / ``serve run serve/config.yaml``: the opinions HTTP API on Ray Serve."""

    model: str = Field("tiny:llama", description="Hugging Face id, local path, or tiny:llama / tiny:gpt2")
    adapters: dict[str, str] = Field(default_factory=dict, description="LoRA adapters by name "
                                     "(e.g. adapters.subpop=runs/train/adapter)")
    default_adapter: str | None = Field(None, description="adapter used when a request names none "
                                        "(default: the base model)")
    backend: Literal["auto", "transformers", "vllm"] = Field("auto", description="auto: vLLM with use_gpu "
                                                             "if installed, else Transformers")
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
    max_body_bytes: int = Field(1_048_576, ge=1024, description="largest request body accepted (413 above), "
                                "checked before parsing")
    max_queued_requests: int = Field(512, ge=1, description="prompts queued for the model deployment "
                                     "before requests get 503 (load shedding)")
    health_timeout_s: float = Field(2.0, gt=0, description="how long /healthz and a waiting request give the model "
                                    "to answer a ping before 503")
    blocking: bool = Field(True, description="keep serving until interrupted (false: deploy and return)")
    generation: GenerationSettings | None = Field(None, description="enable POST /v1/generate (generation.tuned=...)")
