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


def _screen(text):
    """What a terminal shows for `text`: \r returns to the line's start, \n starts a line."""
    lines, line, col = [], [], 0
    for char in text:
        if char == "\r":
            col = 0
        elif char == "\n":
            lines.append("".join(line).rstrip())
            line, col = [], 0
        else:
            if col < len(line):
                line[col] = char
            else:
                line.append(char)
            col += 1
    if line:
        lines.append("".join(line).rstrip())
    return lines


def test_log_lines_never_share_the_bar_line():
    import logging
    from absl import logging as absl_logging
    stream = _Terminal()
    handler = logging.StreamHandler(stream)  # the terminal the bar draws on
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    level = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)
    try:
        bar = ProgressBar(4, "train.tf_record", unit="ex", stream=stream)
        bar.update(1)
        absl_logging.info("*** Example ***")
        bar.update(1)
        absl_logging.warning("something to say")
        bar.update(2)
        bar.close()
    finally:
        root.removeHandler(handler)
        absl_logging.set_verbosity(level)
    screen = [line for line in _screen(stream.getvalue()) if line]
    assert [line for line in screen if "|" not in line] == [
        "INFO *** Example ***", "WARNING something to say"]
    assert screen[-1].startswith("train.tf_record 100%|") and screen[-1].endswith("]")
    # The bar is drawn again below a log line (then cleared for the next one).
    text = stream.getvalue()
    assert text.index("train.tf_record  50%|") > text.index("*** Example ***")
