"""Sampled completions from a Hugging Face causal LM (and its adapters), batched and seeded."""

from __future__ import annotations

import torch

from demoscope.models.scoring import adapter_context, encode_prompts


@torch.inference_mode()
def sample_completions(model, tokenizer, prompts: list[str], adapter: str | None = None, temperature: float = 0.3,
                       top_k: int = 200, max_new_tokens: int = 300, batch_size: int = 8, seed: int = 0) -> list[str]:
    """One sampled completion per prompt (left-padded batches; PoliTune's audit settings by default).

    ``adapter=None`` disables a PEFT model's adapters (the base model).
    """
    torch.manual_seed(seed)
    pad = tokenizer.pad_token_id
    out: list[str] = []
    encoded = encode_prompts(tokenizer, prompts)
    device = next(model.parameters()).device
    with adapter_context(model, adapter):
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start:start + batch_size]
            width = max(len(ids) for ids in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, seq in enumerate(chunk):
                ids[row, width - len(seq):] = torch.tensor(seq)
                mask[row, width - len(seq):] = 1
            generated = model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=True, temperature=temperature,
                top_k=top_k, max_new_tokens=max_new_tokens, pad_token_id=pad,
            )
            out.extend(tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True))
    return out
