"""The local serving engine: one base model in memory, every blue adapter loaded next to it (peft
multi-adapter), streamed generation with time-to-first-token measured.

Chosen by measurement on the 2-core CPU (see `bench/serving.py` and `bench/results/serving-*.md`):
transformers + peft keeps every adapter as a LoRA beside one base model, so a promotion is a
`load_adapter` call, not a conversion (llama.cpp needs each adapter converted to GGUF, ONNX Runtime
a merged export per adapter). Requests are served one at a time per base model (peft switches the
active adapter per request); concurrent streams queue, which the serving benchmark measures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ServedAdapter:
    name: str  # the model name a game asks for
    target: str  # species or species/npc
    tier: str
    version: str
    path: str  # local adapter folder


@dataclass
class StreamStats:
    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    finished: float | None = None
    tokens: int = 0

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_token is None else (self.first_token - self.started) * 1000

    @property
    def total_ms(self) -> float | None:
        return None if self.finished is None else (self.finished - self.started) * 1000

    @property
    def tokens_per_second(self) -> float | None:
        if self.finished is None or self.first_token is None or self.tokens < 2:
            return None
        return (self.tokens - 1) / max(1e-6, self.finished - self.first_token)


class AdapterPool:
    """A base model with named LoRA adapters. `sync` adds new blue adapters and drops retired ones."""

    def __init__(self, model_path: str, threads: int | None = None):
        import torch

        from training.model_loading import load_base_model, load_tokenizer

        if threads:
            torch.set_num_threads(threads)
        self.tokenizer = load_tokenizer(model_path)
        self.base = load_base_model(model_path)
        self.base.eval()
        self.model = self.base  # becomes a PeftModel once the first adapter is loaded
        self.adapters: dict[str, ServedAdapter] = {}  # served name -> adapter
        self._loaded: set[str] = set()  # peft adapter names (versions) in memory
        self._lock = threading.Lock()  # one generation at a time: peft's active adapter is global

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
                    raise FileNotFoundError(f"adapter {adapter.version} for {adapter.name}: folder {adapter.path} is missing")
                if self.model is self.base:
                    self.model = PeftModel.from_pretrained(self.base, adapter.path, adapter_name=peft_name)
                else:
                    self.model.load_adapter(adapter.path, adapter_name=peft_name)
                self.model.eval()
                self._loaded.add(peft_name)
                added.append(adapter.name)
            keep = {self._peft_name(a.version) for a in wanted}
            for peft_name in sorted(self._loaded - keep):
                self.model.delete_adapter(peft_name)
                self._loaded.discard(peft_name)
            removed = sorted(set(self.adapters) - {a.name for a in wanted})
            self.adapters = {a.name: a for a in wanted}
            return {"added": added, "removed": removed}

    def stream(self, name: str | None, messages: list[dict], max_new_tokens: int = 96, temperature: float = 0.0,
               stats: StreamStats | None = None) -> Iterator[str]:
        """Text pieces as they are generated. `name=None`: the base model without any adapter."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

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
                new = text[self.print_len:]
                if new and not new.endswith("\ufffd"):  # not half a multi-byte character
                    self.print_len += len(new)
                    self.on_finalized_text(new)

        class StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return stop.is_set()

        stats = stats or StreamStats()
        stop = threading.Event()
        prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        encoded = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        with self._lock:
            if name is not None and name not in self.adapters:
                raise KeyError(name)
            streamer = TokenStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
            sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
            kwargs = dict(**encoded, max_new_tokens=max_new_tokens, streamer=streamer,
                          stopping_criteria=StoppingCriteriaList([StopWhenAsked()]),
                          pad_token_id=self.tokenizer.pad_token_id, top_p=None, top_k=None, **sampling)
            errors: list[BaseException] = []

            def run():
                try:
                    with torch.no_grad():
                        if name is None:
                            if self.model is self.base:
                                self.base.generate(**kwargs)
                            else:
                                with self.model.disable_adapter():
                                    self.model.generate(**kwargs)
                        else:
                            self.model.set_adapter(self._peft_name(self.adapters[name].version))
                            self.model.generate(**kwargs)
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
