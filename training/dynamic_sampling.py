"""Dynamic sampling for GRPO (the SRL paper's filter): a prompt whose rollouts all score alike
(reward std <= epsilon) carries no learning signal, so its group is dropped from the loss.

TRL 1.16 has no built-in dynamic sampling (huggingface/trl#3708). This subclass keeps the rewards
TRL computes, then zeroes the advantages and completion mask of filtered groups and recomputes
`num_items_in_batch` so the loss is normalised over the kept tokens only. It touches private
GRPOTrainer methods, hence the exact TRL pin in pyproject.toml and the tests that exercise it.
Filtered groups are dropped, not refilled by sampling more prompts: with few prompts per step on CPU
the kept fraction is logged every step (`dynamic_sampling/kept_fraction`) so a starved run shows.
"""

from __future__ import annotations

import torch
from trl import GRPOTrainer


def keep_mask(rewards: torch.Tensor, num_generations: int, epsilon: float) -> torch.Tensor:
    """Per-completion boolean: True where the completion's group has reward std > epsilon."""
    grouped = rewards.view(-1, num_generations)
    finite = torch.nan_to_num(grouped, nan=0.0)
    std = finite.std(dim=1, unbiased=False) if num_generations > 1 else torch.zeros(grouped.shape[0])
    return (std > epsilon).repeat_interleave(num_generations)


class DynamicSamplingGRPOTrainer(GRPOTrainer):
    def __init__(self, *args, dynamic_sampling_epsilon: float, **kwargs):  # the job config's value
        super().__init__(*args, **kwargs)
        self.dynamic_sampling_epsilon = dynamic_sampling_epsilon
        self._last_rewards_per_func: torch.Tensor | None = None

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_rewards_per_func = rewards_per_func
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        if mode != "train" or self._last_rewards_per_func is None:
            return output
        weights = self.reward_weights.to(self._last_rewards_per_func.device)
        rewards = (self._last_rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
        keep = keep_mask(rewards.cpu(), self.num_generations, self.dynamic_sampling_epsilon)
        local = len(output["advantages"])
        start = self.accelerator.process_index * local
        keep_local = keep[start : start + local].to(output["advantages"].device)
        output["advantages"] = output["advantages"] * keep_local
        output["completion_mask"] = output["completion_mask"] * keep_local.unsqueeze(1).to(
            output["completion_mask"].dtype
        )
        loss_mask = output["completion_mask"]
        if "tool_mask" in output:
            loss_mask = loss_mask * output["tool_mask"]
        output["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        self._metrics[mode]["dynamic_sampling/kept_fraction"].append(keep.float().mean().item())
        return output
