"""The peak resident memory of this process while a block of work runs (one training job), sampled by a
background thread: `ru_maxrss` only knows the whole process's peak so far, which, with jobs run in process
one after another, is the largest job's."""

from __future__ import annotations

import threading

import psutil


class PeakMemory:
    def __init__(self, interval_seconds: float = 0.2):
        self.interval_seconds = interval_seconds
        self.peak_bytes = 0
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)

    def start(self) -> PeakMemory:
        self._sample()

        def loop():
            while not self._stop.wait(self.interval_seconds):
                self._sample()

        self._thread = threading.Thread(target=loop, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> float:
        """Stop sampling; the peak in MiB."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        return self.peak_mib

    @property
    def peak_mib(self) -> float:
        return round(self.peak_bytes / 2**20, 1)
