"""`asyncmq bench --profile DIR`: where a worker's time goes while it drains the queue.

Two views of the same processing phase: cProfile's exact call counts and times
(`worker.prof`, for `pstats` or snakeviz), and the call stacks sampled every millisecond in
flamegraph.pl's collapsed format (`worker.collapsed`, which speedscope also opens), because
cProfile alone cannot tell which caller a slow function's time came through.
"""

from __future__ import annotations

import cProfile
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

__all__ = ["Profiler"]

_SAMPLE_EVERY_S = 0.001


def _collapse(frame: FrameType | None) -> str:
    """One stack as flamegraph.pl reads it: outermost call first, frames joined by ';'."""
    names: list[str] = []
    while frame is not None:
        code = frame.f_code
        names.append(f"{code.co_name} ({Path(code.co_filename).name}:{code.co_firstlineno})")
        frame = frame.f_back
    return ";".join(reversed(names))


class Profiler:
    """Profiles the code run inside `profiling()`, over as many runs as it wraps; `write()`
    saves both views. Only this thread is profiled: the worker's event loop."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._profile = cProfile.Profile()
        self._stacks: Counter[str] = Counter()

    @contextmanager
    def profiling(self) -> Iterator[None]:
        stop = threading.Event()
        sampler = threading.Thread(target=self._sample, args=(threading.get_ident(), stop), daemon=True)
        sampler.start()
        self._profile.enable()
        try:
            yield
        finally:
            self._profile.disable()
            stop.set()
            sampler.join()

    def _sample(self, thread_id: int, stop: threading.Event) -> None:
        while not stop.wait(_SAMPLE_EVERY_S):
            frame = sys._current_frames().get(thread_id)
            if frame is not None:
                self._stacks[_collapse(frame)] += 1

    def write(self) -> list[Path]:
        """Write `worker.prof` and `worker.collapsed` into the directory; returns their paths."""
        self.directory.mkdir(parents=True, exist_ok=True)
        stats = self.directory / "worker.prof"
        self._profile.dump_stats(stats)
        collapsed = self.directory / "worker.collapsed"
        collapsed.write_text("".join(f"{stack} {count}\n" for stack, count in self._stacks.most_common()))
        return [stats, collapsed]
