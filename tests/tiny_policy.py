"""A tiny random Llama with SmolLM2's tokenizer: a real model the tests make, so trainers run in seconds."""

from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

from training.model_loading import DEFAULT_POLICY, resolve_model

# a training config that runs every phase of a job on the tiny policy in seconds and learns nothing
TINY_TRAINING = dict(
    max_steps=2,
    prompts_per_step=2,
    num_generations=2,
    max_completion_length=12,
    sft_epochs=0.33,
    sft_batch_size=2,
    curve_rows=2,
    curve_points=1,
    save_steps=1,
    lora_r=4,
    lora_alpha=8,
)


def make_tiny_policy(target: Path, model_cache: Path, hidden_size: int = 32) -> str:
    """`hidden_size` 64 for a 4-bit base: bitsandbytes quantizes a layer's inputs in blocks of 64."""
    if (target / "config.json").exists():
        return str(target)

    smollm2 = resolve_model(DEFAULT_POLICY, model_cache)
    config = AutoConfig.from_pretrained(smollm2)
    config.update(
        {
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": hidden_size // 4,
        }
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(smollm2).save_pretrained(target)
    return str(target)
