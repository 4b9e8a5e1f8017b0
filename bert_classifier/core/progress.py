"""A dependency-free progress line for long loops (featurization, training, evaluation).

Drawn on stderr only when stderr is a terminal (or when forced), so logs and CI output stay
clean: `ProgressBar(total, "train", enabled=None)` decides by `sys.stderr.isatty()`.
"""

import sys
import time
from typing import Optional, TextIO


def _format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class ProgressBar:
    """A one-line progress display: `desc  37%|#####     | 370/1000 [12.3 it/s, loss=0.41, ETA 00:51]`.

    Args:
      total: number of units (steps, examples) expected.
      desc: short label in front of the bar.
      enabled: True/False to force; None draws only when the stream is a terminal.
      unit: name of the rate unit ("it", "ex", "steps").
      stream: where to draw (stderr by default).
      initial: units already done before this bar started (e.g. a resumed training run); they
        count in the percentage but not in the rate.
    """

    def __init__(self, total: int, desc: str = "", enabled: Optional[bool] = None,
                 unit: str = "it", stream: Optional[TextIO] = None, initial: int = 0):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self.total = max(int(total), 0)
        self.desc = desc
        self.unit = unit
        self.initial = int(initial)
        self.done = int(initial)
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._postfix = ""

    def update(self, n: int = 1, **metrics: float) -> None:
        """Advances by `n` units and shows `metrics` (e.g. loss=0.41) after the rate."""
        self.done += n
        if metrics:
            self._postfix = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        now = time.monotonic()
        if self.enabled and (now - self._last_draw > 0.2 or self.done >= self.total):
            self._last_draw = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-9)
        rate = (self.done - self.initial) / elapsed
        frac = min(self.done / self.total, 1.0) if self.total else 1.0
        width = 24
        filled = int(frac * width)
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta_text = _format_seconds(eta) if eta == eta else "--:--"
        extra = f", {self._postfix}" if self._postfix else ""
        line = (f"\r{self.desc} {frac * 100:3.0f}%|{'#' * filled}{' ' * (width - filled)}| "
                f"{self.done}/{self.total} [{rate:.3g} {self.unit}/s{extra}, ETA {eta_text}]")
        self.stream.write(line)
        self.stream.flush()

    def close(self) -> None:
        """Ends the line (only if anything was drawn)."""
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
