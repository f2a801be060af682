"""Helpers shared by the benchmarks (not a test, not part of core): timing and peak memory
in this process or in a fresh one, and the `--quick` size every benchmark takes.

Stdlib only: a benchmark's `--help` and its import stay instant.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE")
REPO = Path(__file__).resolve().parents[1]


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


def parse_args(
    parser: argparse.ArgumentParser, quick: dict[str, object], argv: list[str] | None = None
) -> argparse.Namespace:
    """Parse the benchmark's flags with `--quick` added: it switches the defaults to `quick`
    (a size that runs in seconds, the one tests/test_bench.py runs); explicit flags still win."""
    sizes = " ".join(
        f"--{name.replace('_', '-')}" + ("" if value is True else f" {value}")
        for name, value in quick.items()
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"a small size that checks the benchmark runs: {sizes}"
    )
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**quick)
        args = parser.parse_args(argv)
    return args


_CHILD = "import sys; from bench.measure import _child; _child(sys.argv[1], sys.argv[2:])"


def in_fresh_process(job: str, *args: str) -> dict:
    """Run `job` ("module:function") in a new Python process and measure it there.

    The function, called with `args` (strings), does its set-up and returns the callable
    to time, which returns a JSON-able dict. Returns that dict plus 'seconds' (the callable's
    wall time) and 'peak_mb' (the child's peak resident memory, MiB, set-up included), so
    that no measurement is mixed with another's memory.
    """
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, job, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{job} failed in its process:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def _child(job: str, args: list[str]) -> None:
    import importlib
    import resource

    module, name = job.split(":")
    timed = getattr(importlib.import_module(module), name)(*args)
    t = time.perf_counter()
    result = timed()
    result["seconds"] = time.perf_counter() - t
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data() -> Path:
    """The public data sets beside the repository (../shared/data); when they are not
    there, exits with status 2 and one line saying so."""
    if not SHARED_DATA.is_dir():
        print("error: ../shared/data is not beside the repository", file=sys.stderr)
        sys.exit(2)
    return SHARED_DATA
