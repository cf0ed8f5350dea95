"""The supervised phase's trainer: TRL's `SFTTrainer` with a loss that computes logits for completion tokens only.

TRL 1.16's loss runs the LM head (576 x 49,152 for SmolLM2) over every position of the batch and derives
entropy and token accuracy from it; with completion-only loss most of those positions are prompt. Here the
model's `logits_to_keep` keeps the positions from the batch's earliest completion token onwards, and the
loss is the plain token mean over completion tokens — the same value, 2.3x the tokens per second on this
CPU (bench/results/sweep-precision.md has the measurement).
"""

from __future__ import annotations

import torch
from trl import SFTTrainer


def completion_loss(model, inputs: dict) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy over the completion tokens (`labels` != -100), and their count."""
    labels = inputs["labels"]
    completion = labels != -100
    if not completion.any():
        return torch.zeros((), device=labels.device, requires_grad=True), 0
    first = int(completion.float().argmax(dim=1)[completion.any(dim=1)].min())
    keep = labels.shape[1] - first + 1  # the logit before each completion token predicts it
    outputs = model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs.get("attention_mask"),
        position_ids=inputs.get("position_ids"),
        use_cache=False,
        logits_to_keep=keep,
    )
    logits = outputs.logits[:, :-1].float()
    targets = labels[:, labels.shape[1] - keep + 1 :]
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
    )
    count = int((targets != -100).sum())
    return loss / max(1, count), count


class CompletionSFTTrainer(SFTTrainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, _ = completion_loss(model, inputs)
        return (loss, None) if return_outputs else loss
