"""The llama.cpp serving engine (llama-cpp-python): the default policy's GGUF de-quantized to float32
(the weights the policy was trained on), with each served LoRA adapter converted to a GGUF adapter
(`gguf_lora.py`).

Measured on the 2-core CPU against transformers + peft (`bench/results/serving-*.md`): it reads a
prompt faster, decodes several times faster, and every request reuses the keys and values of the
longest prefix it shares with the previous request to that model (the system prompt, and the world
line while the game state holds), which brings the first token within the Tier 3 budget.

One llama.cpp context per served adapter (the base weights are memory-mapped once and shared);
requests run one at a time, like the transformers engine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

from serving.engine_protocol import ServedAdapter, StreamStats, wait_with_heartbeats
from serving.gguf_lora import base_gguf_shape
from serving.llama_loading import AdapterContexts, open_llama
from srl_forge.policy import DECISION_TOKENS
from training.model_loading import load_tokenizer


class LlamaCppPool(AdapterContexts):
    """Same interface as `AdapterPool` (`ServingEngine`)."""

    name = "llama.cpp"

    def __init__(
        self,
        gguf_path: str | Path,
        tokenizer_path: str,
        cache_dir: str | Path,
        threads: int | None = None,
        n_ctx: int = 2048,
        reuse_prefix: bool = True,
        precision: str = "float32",  # what the base GGUF holds: float32, or int8 (Q8_0)
    ):
        import os

        self.gguf_path = Path(gguf_path)
        self.precision = precision
        self.shape = base_gguf_shape(self.gguf_path)
        self.tokenizer = load_tokenizer(tokenizer_path)  # the chat template the policy was trained with
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.threads = threads or os.cpu_count() or 1
        self.n_ctx = n_ctx
        self.reuse_prefix = reuse_prefix  # False: every request reads its whole prompt (benchmark baseline)
        self.adapters: dict[str, ServedAdapter] = {}
        self._contexts: dict[str, object] = {}  # adapter version ("" for the bare base) -> llama_cpp.Llama
        self._lock = threading.Lock()
        self._stop_ids = {
            i
            for i in (self.tokenizer.eos_token_id, self.tokenizer.convert_tokens_to_ids("<|im_end|>"))
            if isinstance(i, int) and i >= 0
        }

    def _open(self, lora_path: Path | None):
        return open_llama(
            str(self.gguf_path),
            lora_path=str(lora_path) if lora_path else None,
            n_ctx=self.n_ctx,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            verbose=False,
        )

    def _tokens(self, llm, messages: list[dict], generation_prompt: bool = True) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def warm(self, name: str | None, messages: list[dict]) -> int:
        """Evaluates the system prompt (every message but the last) so the next request reuses it."""
        if len(messages) < 2:
            return 0
        with self._lock:
            llm = self._context(name)
            prefix = self._tokens(llm, messages[:-1], generation_prompt=False)
            llm.reset()
            llm.eval(prefix)
            return len(prefix)

    def stream(
        self,
        name: str | None,
        messages: list[dict],
        max_new_tokens: int = DECISION_TOKENS,
        temperature: float = 0.0,
        stats: StreamStats | None = None,
    ) -> Iterator[str]:
        stats = stats or StreamStats()
        yield from wait_with_heartbeats(self._lock)  # one answer at a time: the others wait here
        try:
            llm = self._context(name)
            tokens = self._tokens(llm, messages)
            if not self.reuse_prefix:
                llm.reset()
            evaluated = list(llm.eval_tokens)
            reused = 0
            for a, b in zip(evaluated, tokens):
                if a != b:
                    break
                reused += 1
            stats.cached_prompt_tokens = min(reused, len(tokens) - 1)
            generated: list[int] = []
            printed = 0
            # reset=True keeps the longest prefix shared with what this context evaluated last
            for token in llm.generate(
                tokens, temp=temperature, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0, repeat_penalty=1.0, reset=True
            ):
                if token in self._stop_ids or token == llm.token_eos():
                    break
                generated.append(token)
                stats.tokens += 1
                text = self.tokenizer.decode(generated, skip_special_tokens=True)
                if len(text) > printed and not text.endswith("\ufffd"):  # not half a multi-byte character
                    piece, printed = text[printed:], len(text)
                    if stats.first_token is None:
                        stats.first_token = time.perf_counter()
                    yield piece
                if len(generated) >= max_new_tokens:
                    break
            stats.finished = time.perf_counter()
        finally:
            self._lock.release()
