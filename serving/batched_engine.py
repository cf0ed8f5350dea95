"""The llama.cpp engine with continuous batching: many streams to one model answered at once.

`LlamaCppPool` serves a model's requests one at a time, so the sixteenth player waits for fifteen answers.
Here each served adapter has one llama.cpp context holding up to `slots` sequences, and a scheduler thread
that, every step, puts into one batch the next token of every sequence already answering and the prompt of
every request just admitted (`llama_decode` over many sequences: the weights are read once per step for all
of them). The system prompt's keys and values are computed once per model (`warm`) and copied into each new
sequence (`llama_memory_seq_cp`), so a request reads only its encounter. Greedy decoding gives, token for
token, what one stream alone would give (tested). Same interface as the other engines (`ServingEngine`).
"""

from __future__ import annotations

import ctypes
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from serving.engine_protocol import HEARTBEAT_SECONDS, ServedAdapter, StreamStats
from serving.gguf_lora import base_gguf_shape
from serving.llama_loading import AdapterContexts, model_params
from srl_forge.policy import DECISION_TOKENS
from training.model_loading import load_tokenizer

PREFIX_SEQ = 0  # the sequence holding the cached system prompt; requests use 1..slots
# A step reading at least this many tokens (prompts) uses every thread; a step of generated tokens only leaves
# one core to Python (the server, the guard, the tokenizer): on 2 cores, two llama.cpp threads and the server
# contending made one stream decode at 15 tokens/s instead of 29 (bench/results/serving-engines-2026-12-04.md)
PROMPT_BATCH_TOKENS = 32
DONE = object()


@dataclass
class _Request:
    tokens: list[int]
    max_new_tokens: int
    temperature: float
    stats: StreamStats
    out: queue.Queue = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    seq: int = -1
    position: int = 0  # next position to write in the sequence
    pending: list[int] = field(default_factory=list)  # prompt tokens not yet read
    generated: list[int] = field(default_factory=list)
    printed: int = 0  # characters of the decoded answer already sent
    rng: np.random.Generator = field(default_factory=np.random.default_rng)


class _ModelWorker:
    """One context (one adapter or the bare base) and the thread that batches its requests."""

    def __init__(self, pool: BatchedLlamaPool, lora_path: Path | None):
        import llama_cpp

        self.pool = pool
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = pool.slot_tokens * (pool.slots + 1)
        params.n_batch = pool.batch_tokens
        params.n_ubatch = pool.batch_tokens
        params.n_seq_max = pool.slots + 1
        params.kv_unified = True  # sequences share one buffer (and the copied system prompt)
        params.n_threads = params.n_threads_batch = self.threads = pool.threads
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(pool.model, params)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not make a context for {pool.gguf_path}")
        self.name = str(lora_path or "the base model")
        self.adapter = None
        if lora_path is not None:
            self.adapter = llama_cpp.llama_adapter_lora_init(pool.model, str(lora_path).encode())
            if not self.adapter:
                llama_cpp.llama_free(self.ctx)
                raise RuntimeError(f"llama.cpp could not load the LoRA adapter {lora_path}")
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self.adapter)
            llama_cpp.llama_set_adapters_lora(self.ctx, adapters, 1, (ctypes.c_float * 1)(1.0))
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(pool.batch_tokens, 0, 1)
        self.prefix: list[int] = []  # what PREFIX_SEQ holds
        self.incoming: queue.Queue[_Request] = queue.Queue()
        self.lock = threading.Lock()  # decode calls and the prefix
        self.free = list(range(1, pool.slots + 1))
        self.active: list[_Request] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="llama-batch", daemon=True)
        self.thread.start()

    # --- the batch ------------------------------------------------------------------------------

    def _add(self, n: int, token: int, position: int, seq: int, logits: bool) -> int:
        b = self.batch
        b.token[n], b.pos[n], b.n_seq_id[n], b.logits[n] = token, position, 1, logits
        b.seq_id[n][0] = seq
        return n + 1

    def _decode(self, n: int) -> None:
        import llama_cpp

        self.batch.n_tokens = n
        status = llama_cpp.llama_decode(self.ctx, self.batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed ({status}): the context has no room for the batch")

    def _use_threads(self, threads: int) -> None:
        if threads != self.threads:
            import llama_cpp

            llama_cpp.llama_set_n_threads(self.ctx, threads, threads)
            self.threads = threads

    def warm(self, tokens: list[int]) -> int:
        """Read `tokens` (the system prompt) into the prefix sequence, once; returns how many it holds."""
        with self.lock:
            if tokens == self.prefix:
                return len(tokens)
            import llama_cpp

            llama_cpp.llama_memory_seq_rm(self.memory, PREFIX_SEQ, -1, -1)
            self._use_threads(self.pool.threads)
            for start in range(0, len(tokens), self.pool.batch_tokens):
                n = 0
                for i, token in enumerate(tokens[start : start + self.pool.batch_tokens], start):
                    n = self._add(n, token, i, PREFIX_SEQ, False)
                self._decode(n)
            self.prefix = list(tokens)
            return len(tokens)

    def _admit(self, request: _Request) -> None:
        import llama_cpp

        request.seq = self.free.pop()
        shared = 0
        for a, b in zip(self.prefix, request.tokens[:-1]):  # the last prompt token is always read: its logits
            if a != b:
                break
            shared += 1
        if shared:
            llama_cpp.llama_memory_seq_cp(self.memory, PREFIX_SEQ, request.seq, 0, shared)
        request.stats.cached_prompt_tokens = shared
        request.position, request.pending = shared, request.tokens[shared:]
        self.active.append(request)

    def _finish(self, request: _Request) -> None:
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self.memory, request.seq, -1, -1)
        self.free.append(request.seq)
        self.active.remove(request)
        request.stats.finished = time.perf_counter()
        request.out.put(DONE)

    def _next_token(self, request: _Request, index: int) -> int:
        import llama_cpp

        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, index), shape=(self.pool.n_vocab,))
        if request.temperature <= 0:
            return int(logits.argmax())
        weights = np.exp((logits - logits.max()) / request.temperature)
        return int(request.rng.choice(len(weights), p=weights / weights.sum()))

    def _step(self) -> None:
        """One decode over every active sequence: a generated token each, or a chunk of a prompt."""
        budget, n, readers = self.pool.batch_tokens, 0, []
        for request in list(self.active):
            if request.cancelled.is_set():
                self._finish(request)
        for request in self.active:
            if n >= budget:
                break
            if request.pending:
                chunk = request.pending[: budget - n]
                request.pending = request.pending[len(chunk) :]
                for k, token in enumerate(chunk):
                    last = not request.pending and k == len(chunk) - 1
                    n = self._add(n, token, request.position, request.seq, last)
                    request.position += 1
                if not request.pending:
                    readers.append((request, n - 1))
            else:
                n = self._add(n, request.generated[-1], request.position, request.seq, True)
                request.position += 1
                readers.append((request, n - 1))
        if not n:
            return
        self._use_threads(self.pool.threads if n >= PROMPT_BATCH_TOKENS else self.pool.decode_threads)
        self._decode(n)
        for request, index in readers:
            token = self._next_token(request, index)
            if token in self.pool.stop_ids:
                self._finish(request)
                continue
            request.generated.append(token)
            request.stats.tokens += 1
            text = self.pool.tokenizer.decode(request.generated, skip_special_tokens=True)
            if len(text) > request.printed and not text.endswith("\ufffd"):  # not half a multi-byte character
                if request.stats.first_token is None:
                    request.stats.first_token = time.perf_counter()
                request.out.put(text[request.printed :])
                request.printed = len(text)
            full = request.position + 1 >= self.pool.slot_tokens
            if len(request.generated) >= request.max_new_tokens or full:
                self._finish(request)

    def _run(self) -> None:
        while not self._stop.is_set():
            waiting = []
            if not self.active:  # idle: sleep until a request comes (or the worker is closed)
                try:
                    waiting.append(self.incoming.get(timeout=0.2))
                except queue.Empty:
                    continue
            with self.lock:
                try:
                    while self.free and (waiting or not self.incoming.empty()):
                        request = waiting.pop() if waiting else self.incoming.get_nowait()
                        if not request.cancelled.is_set():  # its caller gave up while it waited: never read
                            self._admit(request)
                    self._step()
                except Exception as exc:  # a failed decode ends every stream with the error, not silently
                    self._fail_all(exc, waiting)

    def _fail_all(self, exc: Exception, waiting: list[_Request] = ()) -> None:
        import llama_cpp

        for request in [*self.active, *waiting]:
            if request in self.active:
                llama_cpp.llama_memory_seq_rm(self.memory, request.seq, -1, -1)
                self.active.remove(request)
                self.free.append(request.seq)
            request.out.put(exc)

    def submit(self, request: _Request) -> None:
        if len(request.tokens) + request.max_new_tokens > self.pool.slot_tokens:
            request.max_new_tokens = max(1, self.pool.slot_tokens - len(request.tokens) - 1)
        self.incoming.put(request)

    def close(self) -> None:
        """Stops the worker; a stream still answering or waiting (the adapter was unloaded under it) ends with an
        error instead of waiting forever."""
        import llama_cpp

        self._stop.set()
        self.thread.join(timeout=10)
        waiting = []
        while not self.incoming.empty():
            waiting.append(self.incoming.get_nowait())
        self._fail_all(RuntimeError(f"the model stopped serving (unloaded) while answering: {self.name}"), waiting)
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)
        if self.adapter is not None:
            llama_cpp.llama_adapter_lora_free(self.adapter)


class BatchedLlamaPool(AdapterContexts):
    """`ServingEngine` over llama.cpp with continuous batching (see the module's docstring)."""

    name = "llama.cpp, continuous batching"

    def __init__(
        self,
        gguf_path: str | Path,
        tokenizer_path: str,
        cache_dir: str | Path,
        threads: int | None = None,
        slots: int = 16,
        slot_tokens: int = 768,
        batch_tokens: int = 512,
        precision: str = "float32",
    ):
        import llama_cpp

        llama_cpp.llama_backend_init()
        self.gguf_path = Path(gguf_path)
        self.precision = precision
        self.shape = base_gguf_shape(self.gguf_path)
        self.tokenizer = load_tokenizer(tokenizer_path)
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.threads = threads or os.cpu_count() or 1
        self.decode_threads = max(1, self.threads - 1)
        self.slots, self.slot_tokens, self.batch_tokens = slots, slot_tokens, batch_tokens
        self.model = llama_cpp.llama_model_load_from_file(str(self.gguf_path).encode(), model_params())
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {self.gguf_path}")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.stop_ids = {llama_cpp.llama_vocab_eos(self.vocab)} | {
            i
            for i in (self.tokenizer.eos_token_id, self.tokenizer.convert_tokens_to_ids("<|im_end|>"))
            if isinstance(i, int) and i >= 0
        }
        self.adapters: dict[str, ServedAdapter] = {}
        self._contexts: dict[str, _ModelWorker] = {}  # adapter version ("" for the bare base) -> its worker
        self._lock = threading.Lock()

    def _tokens(self, messages: list[dict], generation_prompt: bool = True) -> list[int]:
        import llama_cpp

        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        data = text.encode("utf-8")
        buffer = (llama_cpp.llama_token * (len(data) + 8))()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buffer, len(buffer), False, True)
        if n < 0:
            raise RuntimeError("the prompt did not tokenize")
        return list(buffer[:n])

    def _open(self, lora_path: Path | None) -> _ModelWorker:
        return _ModelWorker(self, lora_path)

    def _worker(self, name: str | None) -> _ModelWorker:
        with self._lock:
            return self._context(name)

    def warm(self, name: str | None, messages: list[dict]) -> int:
        if len(messages) < 2:
            return 0
        return self._worker(name).warm(self._tokens(messages[:-1], generation_prompt=False))

    def prefill_seconds(self, messages: list[dict], tokens: int) -> float:
        """Seconds the bare base model takes to read `tokens` prompt tokens (the messages' own, repeated) with
        nothing cached, on every thread: the compute bound of a first token at this precision."""
        ids = self._tokens(messages)
        ids = (ids * (tokens // len(ids) + 1))[:tokens]
        worker = self._open(None)  # its own context: a served adapter's cached prefix is left alone
        try:
            started = time.perf_counter()
            worker.warm(ids)
            return time.perf_counter() - started
        finally:
            worker.close()

    def stream(
        self,
        name: str | None,
        messages: list[dict],
        max_new_tokens: int = DECISION_TOKENS,
        temperature: float = 0.0,
        stats: StreamStats | None = None,
    ) -> Iterator[str]:
        worker = self._worker(name)
        request = _Request(self._tokens(messages), max_new_tokens, temperature, stats or StreamStats())
        worker.submit(request)
        try:
            while True:
                try:
                    piece = request.out.get(timeout=HEARTBEAT_SECONDS)
                except queue.Empty:  # waiting for a slot or the next token
                    yield ""
                    continue
                if piece is DONE:
                    break
                if isinstance(piece, Exception):
                    raise piece
                yield piece
        finally:
            request.cancelled.set()  # the scheduler frees the slot at its next step

    def close(self) -> None:
        import llama_cpp

        for worker in self._contexts.values():
            worker.close()
        self._contexts.clear()
        llama_cpp.llama_model_free(self.model)
