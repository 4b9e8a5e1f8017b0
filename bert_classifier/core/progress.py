"""A dependency-free progress line for long loops (featurization, training, evaluation).

Drawn on stderr only when stderr is a terminal or a Jupyter cell (or when forced), so logs and
CI output stay clean: `ProgressBar(total, "train", enabled=None)` decides by draws_in_place.

A log line never shares the bar's line: while a bar is drawn, a filter on the log handlers
(absl's and the root logger's) clears the bar line before the record is written, and the bar
is drawn again below it at its next update. clear_active_line() does the same for other
output (the scripts' one-line errors).
"""

import logging
import sys
import time
from typing import Optional, TextIO

# The bar whose line is on the screen now (at most one: bars run one after the other).
_ACTIVE: Optional["ProgressBar"] = None


def clear_active_line() -> None:
    """Blanks the line of the bar being drawn, if any, leaving the cursor at its start."""
    bar = _ACTIVE
    if bar is not None and bar._drawn_width:
        bar.stream.write("\r" + " " * bar._drawn_width + "\r")
        bar.stream.flush()
        bar._drawn_width = 0  # the next update draws it again


class _ClearBarFirst(logging.Filter):
    """Lets every record through, after clearing the bar line it would otherwise continue."""

    def filter(self, record: logging.LogRecord) -> bool:
        clear_active_line()
        return True


_FILTER = _ClearBarFirst()


def _install_log_filter() -> None:
    """Puts _FILTER on absl's handler, the root logger's handlers and the console handlers on
    absl's logger itself (fine_tune's), once each; files need no clearing."""
    handlers = list(logging.getLogger().handlers)
    try:
        from absl import logging as absl_logging
        handlers.append(absl_logging.get_absl_handler())
        handlers += [handler for handler in absl_logging.get_absl_logger().handlers
                     if not isinstance(handler, logging.FileHandler)]
    except ImportError:
        pass
    for handler in handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


def _format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def enabled_setting(progress_bar_flag: str) -> Optional[bool]:
    """--progress_bar's value (auto, on, off) as ProgressBar's `enabled` argument (None = decide
    by the stream: draws_in_place)."""
    return {"auto": None, "on": True, "off": False}[progress_bar_flag]


def draws_in_place(stream: TextIO) -> bool:
    """A terminal, or a Jupyter cell (ipykernel's output stream, where "\r" redraws the line):
    where a progress line updates in place instead of piling up."""
    if bool(getattr(stream, "isatty", lambda: False)()):
        return True
    return type(stream).__module__.startswith("ipykernel.")


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
            enabled = draws_in_place(self.stream)
        self.enabled = enabled
        self.total = max(int(total), 0)
        self.desc = desc
        self.unit = unit
        self.initial = int(initial)
        self.done = int(initial)
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._postfix = ""
        self._drawn_width = 0  # characters of the bar on the screen now (0: none)

    def update(self, n: int = 1, **metrics: float) -> None:
        """Advances by `n` units and shows `metrics` (e.g. loss=0.41) after the rate."""
        self.done += n
        if metrics:
            self._postfix = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        now = time.monotonic()
        if self.enabled and (now - self._last_draw > 0.2 or self.done >= self.total or
                             not self._drawn_width):
            self._last_draw = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        global _ACTIVE
        if _ACTIVE is not self:
            if _ACTIVE is not None:
                _ACTIVE.end_line()
            _install_log_filter()
            _ACTIVE = self
        elapsed = max(now - self.start, 1e-9)
        rate = (self.done - self.initial) / elapsed
        frac = min(self.done / self.total, 1.0) if self.total else 1.0
        width = 24
        filled = int(frac * width)
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta_text = _format_seconds(eta) if eta == eta else "--:--"
        extra = f", {self._postfix}" if self._postfix else ""
        line = (f"{self.desc} {frac * 100:3.0f}%|{'#' * filled}{' ' * (width - filled)}| "
                f"{self.done}/{self.total} [{rate:.3g} {self.unit}/s{extra}, ETA {eta_text}]")
        # Blanks what a longer earlier line left at the end.
        self.stream.write("\r" + line.ljust(self._drawn_width))
        self.stream.flush()
        self._drawn_width = len(line)

    def end_line(self) -> None:
        """Ends the bar's line where it is (the next output starts on a line of its own)."""
        global _ACTIVE
        if self._drawn_width:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn_width = 0
        if _ACTIVE is self:
            _ACTIVE = None

    def close(self) -> None:
        """Draws the final state and ends the line (only if drawing is enabled)."""
        if self.enabled:
            self._draw(time.monotonic())
            self.end_line()
