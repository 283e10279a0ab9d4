"""Tiny LoRA models built from configs (no tokenizer, no download) and token batches for the selection tests."""

import torch


def tiny_lora_model(arch: str, seed: int = 0, vocab: int = 24):
    """A random 2-layer GPT-2 or Llama with a LoRA adapter whose B matrices are non-zero
    (so every LoRA tensor has a gradient).
    """
    import warnings

    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from demoscope.training.lora import LoraSettings, apply_lora

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if arch == "gpt2":
            model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, n_positions=32,
                                               bos_token_id=1, eos_token_id=1, pad_token_id=0))
            targets = ["c_attn", "c_proj", "c_fc"]
        else:
            model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                                                 num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                                 max_position_embeddings=32, bos_token_id=1, eos_token_id=1,
                                                 pad_token_id=0))
            targets = ["q_proj", "v_proj"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)  # transformers deprecations PEFT triggers
            model = apply_lora(model, LoraSettings(r=4, alpha=8, dropout=0.1, target_modules=targets))
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.2)
    model.eval()
    return model


def random_batch(n: int = 5, width: int = 12, vocab: int = 24, seed: int = 0):
    """Right-padded token batch with a masked prompt of 3 tokens and rows of different lengths."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(2, vocab, (n, width), generator=g)
    lengths = [width - (i % 4) for i in range(n)]
    mask = torch.zeros(n, width, dtype=torch.long)
    labels = input_ids.clone()
    for i, length in enumerate(lengths):
        mask[i, :length] = 1
        input_ids[i, length:] = 0
        labels[i, length:] = -100
        labels[i, :3] = -100
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
