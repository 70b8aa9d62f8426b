"""One progress line per stage of a long command, with its time and the peak memory so far."""

from __future__ import annotations

import contextlib
import sys
import time


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MB (``getrusage`` max RSS; KB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class Progress:
    """Prints one line per stage to stderr with its duration and the peak memory so far; silent
    when ``enabled`` is False. ``timings`` and ``peaks_mb`` hold both per stage."""

    def __init__(self, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.timings: dict[str, float] = {}
        self.peaks_mb: dict[str, float] = {}  # the process's peak RSS when the stage ended

    @contextlib.contextmanager
    def stage(self, key: str, text: str, announce: bool = True):
        """Time a stage. ``announce=False`` prints its line only once it succeeds, so that an input
        error raised inside it is the only line the user sees."""
        start = time.perf_counter()
        if self.enabled and announce:
            print(f"… {text}", file=self.stream, flush=True)
        yield
        elapsed = time.perf_counter() - start
        self.timings[key] = elapsed
        self.peaks_mb[key] = peak_rss_mb()
        if self.enabled:
            print(
                f"  {'done' if announce else text} in {elapsed:.1f}s (peak memory {self.peaks_mb[key]:,.0f} MB)",
                file=self.stream,
                flush=True,
            )

    def metrics(self) -> dict[str, float]:
        """``time.<stage>_s`` for every stage, ``memory.<stage>_peak_mb`` and the overall ``memory.peak_mb``."""
        from crmvalue.schema import stage_time_metric  # schema imports pandas: not at import

        metrics = {stage_time_metric(k): v for k, v in self.timings.items()}
        metrics.update({f"memory.{k}_peak_mb": v for k, v in self.peaks_mb.items()})
        metrics["memory.peak_mb"] = peak_rss_mb()
        return metrics
