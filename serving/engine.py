"""The local serving engines and how one is picked (`open_engine`).

- llama.cpp for the default policy, which ships as GGUF (served as float32 or Q8_0 from the float32 weights
  it trained on, with GGUF LoRA adapters): chosen by measurement on the 2-core CPU (`bench/serving.py`,
  `bench/results/serving-*.md`): a prompt read about twice as fast as transformers, decoding several
  times faster, and with the shared prompt prefix reused a first token within Tier 3's 500 ms. By default
  with continuous batching (`batched_engine.py`: every stream to a model advances in one decode per step);
  `llama_engine.py` serves one request at a time and is kept as the reference it is tested against.
- transformers + peft (`AdapterPool`, below) for any other base model, or where llama-cpp-python is
  not installed: one base model in memory, every blue adapter loaded beside it, so a promotion is a
  `load_adapter` call. Requests are served one at a time per base model (peft switches the active
  adapter per request); concurrent streams queue, which the serving benchmark measures.

Prefix caching: every request to one served model starts with the same system prompt (the species'
rules, a persona's introduction), so its keys and values are computed once per adapter and reused;
a request then runs the model only over its own encounter. On this CPU that cuts time to first
token by about 40% (vLLM's automatic prefix caching does the same in production).
"""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from serving.batched_engine import BatchedLlamaPool
from serving.engine_protocol import ServedAdapter, ServingEngine, StreamStats, wait_with_heartbeats
from serving.gguf_lora import dequantized_gguf, quantized_gguf
from serving.llama_engine import LlamaCppPool
from srl_forge.deployment import EMBEDDED_PRECISIONS
from srl_forge.policy import DECISION_TOKENS
from training.model_loading import DEFAULT_POLICY, default_policy_gguf, load_base_model, load_tokenizer, resolve_model


class AdapterPool:
    """A base model with named LoRA adapters. `sync` adds new blue adapters and drops retired ones."""

    name = "transformers + peft"

    def __init__(
        self, model_path: str, threads: int | None = None, prefix_cache_size: int = 64, precision: str = "float32"
    ):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.precision = precision
        self.tokenizer = load_tokenizer(model_path)
        self.base = load_base_model(model_path, "8bit" if precision == "int8" else "none")  # bitsandbytes int8
        self.base.eval()
        self.model = self.base  # becomes a PeftModel once the first adapter is loaded
        self.adapters: dict[str, ServedAdapter] = {}  # served name -> adapter
        self._loaded: set[str] = set()  # peft adapter names (versions) in memory
        self._lock = threading.Lock()  # one generation at a time: peft's active adapter is global
        # (peft adapter name or "", prefix token ids) -> the KV cache of that prefix, least recently used first
        self._prefixes: OrderedDict[tuple[str, tuple[int, ...]], object] = OrderedDict()
        self.prefix_cache_size = prefix_cache_size

    @staticmethod
    def _peft_name(version: str) -> str:
        return "v_" + version[:24]

    def sync(self, wanted: list[ServedAdapter]) -> dict[str, list[str]]:
        """Make the pool serve exactly `wanted`; adapters already in memory are kept."""
        from peft import PeftModel

        with self._lock:
            added = []
            for adapter in wanted:
                peft_name = self._peft_name(adapter.version)
                if peft_name in self._loaded:
                    continue
                if not Path(adapter.path).is_dir():
                    raise FileNotFoundError(
                        f"adapter {adapter.version} for {adapter.name}: folder {adapter.path} is missing"
                    )
                if self.model is self.base:
                    self.model = PeftModel.from_pretrained(self.base, adapter.path, adapter_name=peft_name)
                else:
                    self.model.load_adapter(adapter.path, adapter_name=peft_name)
                self.model.eval()
                self._loaded.add(peft_name)
                added.append(adapter.name)
            keep = {self._peft_name(a.version) for a in wanted}
            for peft_name in sorted(self._loaded - keep):
                staying = sorted(self._loaded - {peft_name})
                if self.model.active_adapter == peft_name and staying:
                    self.model.set_adapter(staying[0])  # peft warns when the active adapter is deleted
                self.model.delete_adapter(peft_name)
                self._loaded.discard(peft_name)
                for key in [k for k in self._prefixes if k[0] == peft_name]:
                    del self._prefixes[key]
            removed = sorted(set(self.adapters) - {a.name for a in wanted})
            self.adapters = {a.name: a for a in wanted}
            return {"added": added, "removed": removed}

    def _encode(self, messages: list[dict]):
        """The prompt's token ids, and the ids of its cacheable prefix: every message but the last (the
        system prompt of a served model) when they tokenize as a true prefix of the whole prompt."""
        prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        encoded = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        if self.prefix_cache_size <= 0 or len(messages) < 2:
            return encoded, ()
        head = self.tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=False)
        prefix = tuple(self.tokenizer(head, add_special_tokens=False)["input_ids"])
        ids = encoded["input_ids"][0].tolist()
        # at least one token must be left to run: generate needs an input past the cache
        if not prompt.startswith(head) or len(prefix) >= len(ids) or tuple(ids[: len(prefix)]) != prefix:
            return encoded, ()
        return encoded, prefix

    @contextmanager
    def _adapter_active(self, name: str | None):
        """(model to generate with, peft adapter name or "" for the bare base model); hold the lock."""
        if name is None:
            if self.model is self.base:
                yield self.base, ""
            else:
                with self.model.disable_adapter():
                    yield self.model, ""
        else:
            peft_name = self._peft_name(self.adapters[name].version)
            self.model.set_adapter(peft_name)
            yield self.model, peft_name

    def _prefix_cache(self, model, peft_name: str, prefix_ids: tuple[int, ...]):
        """The KV cache of a prompt prefix under the active adapter (LoRA changes keys and values)."""
        import torch
        from transformers import DynamicCache

        key = (peft_name, prefix_ids)
        cache = self._prefixes.get(key)
        if cache is None:
            cache = model(
                input_ids=torch.tensor([prefix_ids]), past_key_values=DynamicCache(), use_cache=True, logits_to_keep=1
            ).past_key_values
            self._prefixes[key] = cache
            while len(self._prefixes) > self.prefix_cache_size:
                self._prefixes.popitem(last=False)
        self._prefixes.move_to_end(key)
        return cache

    def warm(self, name: str | None, messages: list[dict]) -> int:
        """Computes the prefix cache a request with these messages would use; returns its length in tokens."""
        import torch

        _, prefix_ids = self._encode(messages)
        if not prefix_ids:
            return 0
        with self._lock, torch.no_grad(), self._adapter_active(name) as (model, peft_name):
            self._prefix_cache(model, peft_name, prefix_ids)
        return len(prefix_ids)

    def stream(
        self,
        name: str | None,
        messages: list[dict],
        max_new_tokens: int = DECISION_TOKENS,
        temperature: float = 0.0,
        stats: StreamStats | None = None,
    ) -> Iterator[str]:
        """Text pieces as they are generated. `name=None`: the base model without any adapter."""
        import torch
        from transformers import (
            StoppingCriteria,
            StoppingCriteriaList,
            TextIteratorStreamer,
        )

        class TokenStreamer(TextIteratorStreamer):
            """Releases text token by token (the stock streamer waits for a space: a word later)."""

            def put(self, value):
                if len(value.shape) > 1:
                    value = value[0]
                if self.skip_prompt and self.next_tokens_are_prompt:
                    self.next_tokens_are_prompt = False
                    return
                stats.tokens += int(value.numel())
                self.token_cache.extend(value.tolist())
                text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)
                new = text[self.print_len :]
                if new and not new.endswith("\ufffd"):  # not half a multi-byte character
                    self.print_len += len(new)
                    self.on_finalized_text(new)

        class StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return stop.is_set()

        stats = stats or StreamStats()
        stop = threading.Event()
        encoded, prefix_ids = self._encode(messages)
        yield from wait_with_heartbeats(self._lock)  # one answer at a time: the others wait here
        try:
            if name is not None and name not in self.adapters:
                raise KeyError(name)
            streamer = TokenStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
            sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
            kwargs = dict(
                **encoded,
                max_new_tokens=max_new_tokens,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([StopWhenAsked()]),
                pad_token_id=self.tokenizer.pad_token_id,
                top_p=None,
                top_k=None,
                **sampling,
            )
            errors: list[BaseException] = []

            def run():
                try:
                    with torch.no_grad(), self._adapter_active(name) as (model, peft_name):
                        if prefix_ids:
                            # generate extends the cache it is given: each request gets its own copy
                            kwargs["past_key_values"] = copy.deepcopy(self._prefix_cache(model, peft_name, prefix_ids))
                            stats.cached_prompt_tokens = len(prefix_ids)
                        model.generate(**kwargs)
                except BaseException as exc:  # surfaced to the caller after the stream ends
                    errors.append(exc)
                    streamer.end()

            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            drained = False
            try:
                for piece in streamer:
                    if not piece:
                        continue
                    if stats.first_token is None:
                        stats.first_token = time.perf_counter()
                    yield piece
                drained = True
            finally:
                # the caller may stop reading early (a guardrail hit, a closed connection): stop the
                # generation before the next request may switch adapters
                stop.set()
                if not drained:
                    for _ in streamer:
                        pass
                worker.join()
                stats.finished = time.perf_counter()
            if errors:
                raise errors[0]
        finally:
            self._lock.release()


ENGINES = ("auto", "llama.cpp", "llama.cpp-batched", "transformers")


def llama_cpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def open_engine(
    engine: str,
    base_model: str,
    model_cache: str | Path,
    threads: int | None = None,
    prefix_cache_size: int = 64,
    precision: str = "float32",
) -> ServingEngine:
    """The serving engine for a base model at a precision (`float32`, or `int8`: llama.cpp's Q8_0, or
    bitsandbytes' int8 in transformers). `auto`: llama.cpp with continuous batching for the default policy (it
    ships as GGUF) when llama-cpp-python is installed, else transformers + peft; `llama.cpp`: one request at a
    time per model (the earlier engine, kept as the reference). Production serves with vLLM."""

    if engine not in ENGINES:
        raise ValueError(f"serving engine {engine!r}: one of {', '.join(ENGINES)}")
    if precision not in EMBEDDED_PRECISIONS:
        raise ValueError(f"serving precision {precision!r}: one of {', '.join(EMBEDDED_PRECISIONS)}")
    hf_path = resolve_model(base_model, Path(model_cache))
    use_llama = engine.startswith("llama.cpp") or (
        engine == "auto" and base_model == DEFAULT_POLICY and llama_cpp_available()
    )
    if use_llama:
        if base_model != DEFAULT_POLICY:
            raise ValueError(
                f"the llama.cpp engine serves the default policy's GGUF; {base_model} is served by "
                "transformers locally and by vLLM in production"
            )

        base = dequantized_gguf(default_policy_gguf(), Path(model_cache) / "gguf" / f"{base_model}-f32.gguf")
        if precision == "int8":  # from the float32 weights the policy was trained on, not from the shipped Q4_1
            base = quantized_gguf(base, Path(model_cache) / "gguf" / f"{base_model}-q8_0.gguf")
        adapters = Path(model_cache) / "gguf" / "adapters"
        if engine == "llama.cpp":
            return LlamaCppPool(base, hf_path, adapters, threads, precision=precision)
        return BatchedLlamaPool(base, hf_path, adapters, threads, precision=precision)
    return AdapterPool(hf_path, threads, prefix_cache_size, precision)
