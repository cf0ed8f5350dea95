"""Greedy (or sampled) generation from a policy in batches, and the SRL validation metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from srl_forge.policy import (
    DECISION_TOKENS,
    STEP_TOKENS,
    decision_format_settled_broken,
    decision_id,
    generated_action,
    parse_decision,
    step_format_settled_broken,
)
from training.learning_curve import predictions_count
from training.model_loading import bf16_supported
from training.outcome_dataset import scores_by_action
from training.rewards import decision_score, step_similarity_reward


def _stop_when(tokenizer, prompt_length: int, settled: Callable[[str], bool]):
    """A per-sequence stopping criterion: a sequence stops once `settled(its text so far)` holds."""
    import torch
    from transformers import StoppingCriteria

    class StopWhenSettled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, prompt_length:], skip_special_tokens=True)
            return torch.tensor([settled(t) for t in texts], dtype=torch.bool, device=input_ids.device)

    return StopWhenSettled()


def generate(
    model,
    tokenizer,
    prompts: Sequence[list[dict]],
    max_new_tokens: int = 64,
    batch_size: int = 16,
    do_sample: bool = False,
    temperature: float = 1.0,
    num_return_sequences: int = 1,
    progress: Callable[[int, int], None] | None = None,
    stop_when: Callable[[str], bool] | None = None,
    bf16: bool | None = None,
) -> list[list[str]]:
    """Completions per prompt (num_return_sequences each), decoding left-padded batches.

    `stop_when(text)`: stop a sequence as soon as its score can no longer change (a format already broken
    beyond repair, `training.rewards.*_settled_broken`); its text then ends where it broke. On CPU most of
    an untrained policy's generation time is such rambling.

    `bf16`: decode under bf16 autocast (None: where the hardware has it; 3x float32's speed on this CPU)."""
    import torch

    autocast = torch.autocast(
        model.device.type, dtype=torch.bfloat16, enabled=bf16_supported() if bf16 is None else bf16
    )

    was_training = model.training
    model.eval()
    tokenizer.padding_side = "left"
    outputs: list[list[str]] = []
    try:
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in batch]
            encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            stopping = [_stop_when(tokenizer, encoded["input_ids"].shape[1], stop_when)] if stop_when else None
            with torch.no_grad(), autocast:
                generated = model.generate(
                    **encoded,
                    max_new_tokens=max_new_tokens,
                    do_sample=do_sample,
                    temperature=temperature if do_sample else None,
                    top_p=None,
                    top_k=None,
                    num_return_sequences=num_return_sequences,
                    pad_token_id=tokenizer.pad_token_id,
                    stopping_criteria=stopping,
                )
            new_tokens = generated[:, encoded["input_ids"].shape[1] :]
            decoded = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            for i in range(len(batch)):
                outputs.append(decoded[i * num_return_sequences : (i + 1) * num_return_sequences])
            if progress:
                progress(min(start + batch_size, len(prompts)), len(prompts))
    finally:
        if was_training:
            model.train()
    return outputs


def greedy_completions(model, tokenizer, rows, max_new_tokens, batch_size, progress, settled) -> list[str]:
    """One greedy completion per row's prompt, each stopped once `settled` says its score cannot change."""
    prompts = [r["prompt"] for r in rows]
    return [
        c[0]
        for c in generate(model, tokenizer, prompts, max_new_tokens, batch_size, progress=progress, stop_when=settled)
    ]


def srl_validation(
    model, tokenizer, rows: Sequence[dict], max_new_tokens: int = STEP_TOKENS, batch_size: int = 16, progress=None
) -> dict:
    """Mean step-similarity reward (-1 on bad format) and format rate, greedy, over `rows`."""
    if not rows:
        return {"step_similarity": 0.0, "format_rate": 0.0, "rows": 0, "samples": []}
    completions = greedy_completions(
        model, tokenizer, rows, max_new_tokens, batch_size, progress, step_format_settled_broken
    )
    rewards = step_similarity_reward(None, completions, [r["expert_action"] for r in rows])
    formatted = [generated_action(c) is not None for c in completions]
    return {
        "step_similarity": sum(rewards) / len(rewards),
        "format_rate": sum(formatted) / len(formatted),
        "rows": len(rows),
        "samples": [{"expert": r["expert_step"], "generated": c} for r, c in list(zip(rows, completions))[:5]],
    }


def outcome_validation(
    model, tokenizer, rows: Sequence[dict], max_new_tokens: int = DECISION_TOKENS, batch_size: int = 16, progress=None
) -> dict:
    """Mean graded decision score, decision accuracy (the engine's top action) and format rate, greedy."""
    if not rows:
        return {
            "mean_reward": 0.0,
            "decision_accuracy": 0.0,
            "format_rate": 0.0,
            "rows": 0,
            "samples": [],
            "chosen": [],
        }
    completions = greedy_completions(
        model, tokenizer, rows, max_new_tokens, batch_size, progress, decision_format_settled_broken
    )
    scores = [decision_score(c, scores_by_action(r["action_scores"])) for c, r in zip(completions, rows)]
    decisions = [parse_decision(c) for c in completions]
    return {
        "chosen": [d[0] if d else None for d in decisions],
        "mean_reward": sum(scores) / len(scores),
        "decision_accuracy": sum(d is not None and d[0] in r["top_actions"] for d, r in zip(decisions, rows))
        / len(rows),
        "format_rate": sum(d is not None for d in decisions) / len(completions),
        "rows": len(rows),
        "samples": [{"top": r["top_actions"], "generated": c} for r, c in list(zip(rows, completions))[:5]],
    }


def srl_probe(model, tokenizer, rows: Sequence[dict], max_new_tokens: int = STEP_TOKENS) -> dict:
    """The SRL learning-curve probe: the format over every probed step row, and the decision over its DECIDE
    rows (the expert's earlier steps in context; the action against the engine's top actions)."""
    completions = greedy_completions(model, tokenizer, rows, max_new_tokens, 16, None, step_format_settled_broken)
    actions = [generated_action(c) for c in completions]
    decide = [(a, r) for a, r in zip(actions, rows) if r["expert_title"] == "DECIDE"]
    chosen = [decision_id(a) for a, _ in decide]
    return {
        "format_rate": sum(a is not None for a in actions) / max(1, len(rows)),
        "decision_accuracy": sum(
            c is not None and c in (r.get("top_actions") or [decision_id(r["expert_action"])])
            for c, (_, r) in zip(chosen, decide)
        )
        / max(1, len(decide)),
        "predictions": predictions_count(chosen),
    }


def outcome_probe(model, tokenizer, rows: Sequence[dict], max_new_tokens: int = DECISION_TOKENS) -> dict:
    """The RLVR learning-curve probe: decision accuracy, format rate and the chosen actions, greedy."""
    result = outcome_validation(model, tokenizer, rows, max_new_tokens)
    return {**result, "predictions": predictions_count(result["chosen"])}
