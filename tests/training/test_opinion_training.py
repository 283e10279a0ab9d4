"""Opinion training pieces on the tiny model: left padding, schedules, and a loss that goes down."""

import math

import pandas as pd
import pytest
import torch

from demoscope.models import load_causal_lm
from demoscope.models.names import resolve_model
from demoscope.training.lora import LoraSettings, apply_lora
from demoscope.training.opinion_data import OpinionDataset, collate, label_token_ids
from demoscope.training.opinion_loop import target_logits, train_epoch, validate
from demoscope.training.schedules import make_scheduler

PROMPTS = [
    ("Question: Which party?\nA. Republican\nB. Democrat\n\nAnswer: B. Democrat\n\n"
     "Question: How often do you vote?\nA. Always\nB. Sometimes\nC. Never\nAnswer as a choice between A.,B.,C.\n\n"
     "Answer:"),
    "Question: Do you own a gun?\nA. Yes\nB. No\nC. Refused\nAnswer as a choice between A.,B.,C.\n\nAnswer:",
]


@pytest.fixture(scope="module")
def tiny():
    return load_causal_lm(resolve_model("tiny:llama"))


def frame(n=8):
    rows = [{"input_prompt": PROMPTS[i % 2], "output_dist": [0.7, 0.2, 0.1] if i % 2 else [0.1, 0.3, 0.5, 0.1],
             "ordinal": [1.0, 2.0] if i % 2 else [1.0, 2.0, 3.0]} for i in range(n)]
    return pd.DataFrame(rows)


def test_left_padded_batch_gives_the_unpadded_last_token_logits(tiny):
    model, tokenizer = tiny
    data = OpinionDataset(frame(2), tokenizer)
    batch = collate([data[0], data[1]], tokenizer.pad_token_id)
    assert batch["attention_mask"][1, 0] == 0  # the shorter prompt is padded on the left
    batched = target_logits(model, batch)
    for row in range(2):
        alone = collate([data[row]], tokenizer.pad_token_id)
        assert torch.allclose(batched[row], target_logits(model, alone), atol=1e-4)


def test_targets_and_labels_follow_subpop_padding(tiny):
    _, tokenizer = tiny
    example = OpinionDataset(frame(2), tokenizer)[0]
    assert example.target == [0.1, 0.3, 0.5, 0.1, 0, 0, 0, 0, 0, 0]
    assert example.ordinal == [1.0, 2.0, 3.0] + [3.0] * 7
    labels = label_token_ids(tokenizer)
    assert [tokenizer.decode([i]) for i in labels] == [f" {chr(65 + i)}" for i in range(10)]


def test_step_schedule_decays_by_gamma_per_epoch_and_cosine_ends_at_zero():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1.0)
    step = make_scheduler(opt, "step", steps_per_epoch=4, epochs=3, gamma=0.5)
    for _ in range(4):
        opt.step()
        step.step()
    assert step.get_last_lr()[0] == pytest.approx(0.5)
    opt = torch.optim.AdamW([param], lr=1.0)
    cosine = make_scheduler(opt, "cosine", steps_per_epoch=5, epochs=2, warmup_ratio=0.2)
    lrs = []
    for _ in range(10):
        lrs.append(cosine.get_last_lr()[0])
        opt.step()
        cosine.step()
    assert (lrs[0] < lrs[1] < lrs[2] and max(lrs) == pytest.approx(1.0)
            and cosine.get_last_lr()[0] == pytest.approx(0.0, abs=1e-9))
    opt = torch.optim.AdamW([param], lr=1.0)
    counted = make_scheduler(opt, "cosine", steps_per_epoch=5, epochs=2, warmup_ratio=0.2, warmup_steps=4)
    lrs = []
    for _ in range(10):
        lrs.append(counted.get_last_lr()[0])
        opt.step()
        counted.step()
    assert lrs[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])  # four warm-up steps, whatever the ratio says


@pytest.mark.parametrize("objective", ["kl", "wd"])
def test_a_few_epochs_on_fixed_rows_lower_the_objective(objective):
    model, tokenizer = load_causal_lm(resolve_model("tiny:llama"))
    torch.manual_seed(0)
    model = apply_lora(model, LoraSettings(dropout=0.0))
    data = OpinionDataset(frame(8), tokenizer)
    loader = torch.utils.data.DataLoader(data, batch_size=4, collate_fn=lambda b: collate(b, tokenizer.pad_token_id))
    labels = label_token_ids(tokenizer)
    before = validate(model, loader, labels)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    sched = make_scheduler(opt, "step", steps_per_epoch=2, epochs=10, gamma=1.0)
    steps = []
    for _ in range(10):
        train_epoch(model, loader, opt, sched, labels, objective, on_step=lambda s, m: steps.append(m["loss"]))
    after = validate(model, loader, labels)
    assert len(steps) == 20 and all(math.isfinite(s) for s in steps)
    assert after[objective] < 0.5 * before[objective]


def _one_step(batch_size, grad_accum, checkpointing=False):
    model, tokenizer = load_causal_lm(resolve_model("tiny:llama"))
    if checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    torch.manual_seed(0)
    model = apply_lora(model, LoraSettings(dropout=0.0))
    with torch.no_grad():  # non-zero B so that A receives gradient too
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    data = OpinionDataset(frame(4), tokenizer)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size,
                                         collate_fn=lambda b: collate(b, tokenizer.pad_token_id))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    sched = make_scheduler(opt, "step", steps_per_epoch=1, epochs=1, gamma=1.0)
    train_epoch(model, loader, opt, sched, label_token_ids(tokenizer), "kl", grad_accum=grad_accum)
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_gradient_accumulation_matches_one_big_batch():
    big, accumulated = _one_step(4, 1), _one_step(2, 2)
    assert all(torch.allclose(big[n], accumulated[n], atol=1e-6) for n in big)


def test_gradient_checkpointing_gives_the_same_update():
    plain, checkpointed = _one_step(4, 1), _one_step(4, 1, checkpointing=True)
    assert all(torch.allclose(plain[n], checkpointed[n], atol=1e-6) for n in plain)
