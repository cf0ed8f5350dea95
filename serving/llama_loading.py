"""What the two llama.cpp engines share: how a model is loaded, and one context per served adapter version.

The model is loaded on the CPU's plain buffers, never its repacked ("extra") ones.

On a Xeon with AMX, llama.cpp puts Q8_0 weights in its AMX buffer type, and the first matrix product on them
segfaults (seen here on 2026-12-04 with llama-cpp-python 0.3.36; ggml-org/llama.cpp#20824 reports the same
crash in `ggml_backend_amx_mul_mat`). `use_extra_bufts = False` is what llama.cpp's `--no-repack` sets: the
weights stay where the float32 and Q8_0 CPU kernels read them. `llama_cpp.Llama` takes no such argument, so
`open_llama` makes its default model parameters say so while it loads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from serving.engine_protocol import ServedAdapter
from serving.gguf_lora import convert_lora

_LOADING = threading.Lock()  # the default parameters are swapped module-wide while one model loads


def _without_repacking(defaults):
    def model_params():
        params = defaults()
        params.use_extra_bufts = False
        return params

    return model_params


def model_params():
    """llama.cpp's default model parameters, without the repacked CPU buffers (the module's docstring); llama.cpp
    logs only its errors from here on, as `Llama(verbose=False)` makes it."""
    import llama_cpp  # the engines' optional dependency: imported where a model is loaded
    from llama_cpp._logger import set_verbose

    set_verbose(False)
    return _without_repacking(llama_cpp.llama_model_default_params)()


@contextmanager
def _default_params_without_repacking(low_level) -> Iterator[None]:
    """`Llama.__init__` reads `llama_cpp.llama_model_default_params()` and takes no `use_extra_bufts`: the
    function is swapped while one model loads (under `_LOADING`) and put back whatever happens."""
    defaults = low_level.llama_model_default_params
    with _LOADING:
        low_level.llama_model_default_params = _without_repacking(defaults)
        try:
            yield
        finally:
            low_level.llama_model_default_params = defaults


def open_llama(model_path: str, **kwargs):
    """`llama_cpp.Llama(model_path, **kwargs)`, its model loaded with `model_params()`."""
    import llama_cpp.llama as high_level  # the engines' optional dependency: imported where a model is loaded

    with _default_params_without_repacking(high_level.llama_cpp):
        return high_level.Llama(model_path, **kwargs)


class AdapterContexts:
    """Each served adapter converted to a GGUF adapter once per version (a version is content-addressed) and
    one llama.cpp context per version, "" for the bare base. Subclasses set `cache_dir`, `shape`, `adapters`,
    `_contexts`, `_lock` and say how a context opens (`_open`); a context has `close()`."""

    cache_dir: Path
    shape: dict
    adapters: dict[str, ServedAdapter]
    _contexts: dict[str, object]
    _lock: threading.Lock

    def _open(self, lora_path: Path | None): ...

    def _gguf_adapter(self, adapter: ServedAdapter) -> Path:
        target = self.cache_dir / f"{adapter.version}.gguf"
        if not target.exists():
            if not Path(adapter.path).is_dir():
                raise FileNotFoundError(
                    f"adapter {adapter.version} for {adapter.name}: folder {adapter.path} is missing"
                )
            convert_lora(Path(adapter.path), target, self.shape)
        return target

    def sync(self, wanted: list[ServedAdapter]) -> dict[str, list[str]]:
        with self._lock:
            added = []
            for adapter in wanted:
                if adapter.version not in self._contexts:
                    self._contexts[adapter.version] = self._open(self._gguf_adapter(adapter))
                    added.append(adapter.name)
            keep = {a.version for a in wanted} | {""}
            for version in [v for v in self._contexts if v not in keep]:
                self._contexts.pop(version).close()
            removed = sorted(set(self.adapters) - {a.name for a in wanted})
            self.adapters = {a.name: a for a in wanted}
            return {"added": added, "removed": removed}

    def _context(self, name: str | None):
        """The context serving `name` (None: the bare base). The caller holds `_lock`."""
        if name is None:
            if "" not in self._contexts:
                self._contexts[""] = self._open(None)
            return self._contexts[""]
        if name not in self.adapters:
            raise KeyError(name)
        return self._contexts[self.adapters[name].version]
