"""A tiny random Llama with SmolLM2's tokenizer: a real model the tests make, so trainers run in seconds."""

from pathlib import Path

from training.model_loading import DEFAULT_POLICY, resolve_model


def make_tiny_policy(target: Path, model_cache: Path) -> str:
    if (target / "config.json").exists():
        return str(target)
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    smollm2 = resolve_model(DEFAULT_POLICY, model_cache)
    config = AutoConfig.from_pretrained(smollm2)
    config.update(
        {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 8,
        }
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(smollm2).save_pretrained(target)
    return str(target)
