"""Timing and peak-memory helpers shared by the benchmarks (not a test, not part of core)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


@dataclass
class Measurement:
    seconds: float
    peak_bytes: int  # highest resident memory of the process while it ran
    start_bytes: int  # resident memory just before

    @property
    def extra_bytes(self) -> int:
        return self.peak_bytes - self.start_bytes


@contextmanager
def peak_rss(interval: float = 0.002):
    """Sample this process's resident memory in a thread; yields a dict with 'peak'."""
    result = {"peak": rss_bytes()}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            result["peak"] = max(result["peak"], rss_bytes())
            time.sleep(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result["peak"] = max(result["peak"], rss_bytes())


def measure(fn: Callable[[], object], *, repeat: int = 3, warmup: int = 1) -> Measurement:
    """Best wall time of `repeat` runs after `warmup`, and the peak memory over all of them."""
    import gc

    for _ in range(warmup):
        fn()
    gc.collect()
    start = rss_bytes()
    best = float("inf")
    with peak_rss() as mem:
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
    return Measurement(best, mem["peak"], start)


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"
