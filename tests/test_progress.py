"""The progress line: drawn only on a terminal (or when forced), with rate, metrics and ETA."""

import io
import re

from bert_classifier.core.progress import ProgressBar


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_draws_rate_metrics_and_eta_on_a_terminal():
    stream = _Terminal()
    bar = ProgressBar(10, "train", unit="steps", stream=stream, initial=2)
    for _ in range(8):
        bar.update(1, loss=0.5)
    bar.close()
    text = stream.getvalue()
    last = text.strip().split("\r")[-1]
    assert last.startswith("train 100%|")
    assert "10/10" in last and "loss=0.5" in last and "ETA 00:00" in last
    assert re.search(r"[\d.e+]+ steps/s", last)
    assert text.endswith("\n")


def test_silent_when_not_a_terminal():
    stream = io.StringIO()
    bar = ProgressBar(5, "eval", stream=stream)
    for _ in range(5):
        bar.update(1)
    bar.close()
    assert stream.getvalue() == ""
    forced = io.StringIO()
    bar = ProgressBar(5, "eval", stream=forced, enabled=True)
    bar.update(5)
    assert "5/5" in forced.getvalue()
