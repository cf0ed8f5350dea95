"""GGUF files for the llama.cpp engine: the base model de-quantized to float32 (and, for `int8`, quantized
again to Q8_0 from there), and each peft LoRA
adapter of a Llama-architecture model as a GGUF LoRA adapter applied over it at load time.

Why float32: the policy is trained on the de-quantized weights of the shipped Q4_1 file, so a float32
GGUF holds exactly the weights it learned on; and on this CPU llama.cpp reads a prompt twice as fast
from float32 as from Q4_1 (its AVX2 matrix kernels), which is what time to first token is made of.

The layout follows llama.cpp's `convert_lora_to_gguf.py`: tensors `blk.<i>.<module>.weight.lora_a` /
`.lora_b`, `adapter.lora.alpha` in the metadata. llama.cpp stores the query and key projections with
their rows permuted for its rotary embedding (`convert_hf_to_gguf.py`'s `LlamaModel.permute`), so the
B matrices of `q_proj` and `k_proj` (whose rows are the projection's rows) are permuted the same way.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

MODULES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_NAME = re.compile(r"layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.lora_([AB])\.weight$")


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


@contextmanager
def _gguf_writer(target: Path, architecture: str):
    """A GGUF writer whose file appears at `target` only once it is complete."""
    import gguf

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkstemp(dir=target.parent, prefix=".incoming-", suffix=".gguf")[1])
    try:
        writer = gguf.GGUFWriter(str(staging), architecture)
        yield writer
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(staging, target)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def dequantized_gguf(source: Path, target: Path) -> Path:
    """`source` with every tensor in float32 (metadata kept), written once, atomically, at `target`."""
    if target.exists():
        return target
    import gguf
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(str(source))
    with _gguf_writer(target, reader.fields["general.architecture"].contents()) as writer:
        for key, field in reader.fields.items():
            if key.startswith("GGUF.") or key == "general.architecture":
                continue  # written by the writer itself
            value = 0 if key == "general.file_type" else field.contents()  # 0: all float32
            if field.types[0] == gguf.GGUFValueType.ARRAY:
                writer.add_key_value(key, value, field.types[0], sub_type=field.types[-1])
            else:
                writer.add_key_value(key, value, field.types[0])
        for tensor in reader.tensors:
            data = dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
            writer.add_tensor(tensor.name, data.reshape([int(n) for n in reversed(tensor.shape.tolist())]))
    return target


def quantized_gguf(source: Path, target: Path) -> Path:
    """`source` (a float32 GGUF) as llama.cpp's 8-bit Q8_0 (blocks of 32 int8 weights with one scale), written
    once, atomically, at `target`: the embedded engine's `int8` precision."""
    if target.exists():
        return target
    import ctypes

    import llama_cpp

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkstemp(dir=target.parent, prefix=".incoming-", suffix=".gguf")[1])
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.nthread = os.cpu_count() or 1
    try:
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(staging).encode(), ctypes.byref(params))
        if status != 0:
            raise RuntimeError(f"llama.cpp could not quantize {source} to Q8_0 (status {status})")
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    return target


def base_gguf_shape(gguf_path: Path) -> dict:
    """The numbers of attention heads (query, key/value) of a GGUF base model."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))
    arch = reader.fields["general.architecture"].contents()
    return {
        "architecture": arch,
        "heads": int(reader.fields[f"{arch}.attention.head_count"].contents()),
        "kv_heads": int(reader.fields[f"{arch}.attention.head_count_kv"].contents()),
    }


def convert_lora(adapter_dir: Path, target: Path, shape: dict) -> Path:
    """Write `adapter_dir` (peft: adapter_config.json + adapter_model.safetensors) as a GGUF LoRA file
    at `target` (atomically); returns `target`."""
    import gguf
    from safetensors.numpy import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if config.get("use_rslora") or config.get("use_dora"):
        raise ValueError(f"{adapter_dir}: rsLoRA / DoRA adapters have no llama.cpp form here")
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    with _gguf_writer(target, shape["architecture"]) as writer:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
        written = 0
        for name in sorted(tensors):
            match = _NAME.search(name)
            if match is None:
                raise ValueError(f"{adapter_dir}: tensor {name} is not a LoRA matrix of a known module")
            layer, module, which = match.groups()
            data = tensors[name].astype(np.float32)
            if which == "B" and module == "self_attn.q_proj":
                data = _permute(data, shape["heads"])
            elif which == "B" and module == "self_attn.k_proj":
                data = _permute(data, shape["kv_heads"])
            writer.add_tensor(f"blk.{layer}.{MODULES[module]}.weight.lora_{which.lower()}", data)
            written += 1
        if not written:
            raise ValueError(f"{adapter_dir}: no LoRA tensors")
    return target
