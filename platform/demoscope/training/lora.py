"""LoRA through PEFT, with SubPOP's defaults (r=8, alpha=32, q_proj/v_proj, dropout 0.05)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LoraSettings(BaseModel):
    """LoRA hyperparameters (PEFT ``LoraConfig`` fields)."""

    model_config = ConfigDict(extra="forbid")
    r: int = Field(8, ge=1, description="LoRA rank")
    alpha: int = Field(32, ge=1, description="LoRA alpha (the update is scaled by alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA branch")
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"],
                                      description="module names that get an adapter (default: q_proj, v_proj)")


def apply_lora(model, settings: LoraSettings):
    """Wrap a causal LM with a fresh trainable LoRA adapter; only the adapter's weights train."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
        target_modules=settings.target_modules, task_type="CAUSAL_LM", bias="none",
    )
    return get_peft_model(model, config)
