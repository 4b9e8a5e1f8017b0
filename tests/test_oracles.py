"""The oracle tests (comparisons with Google's original code, the `bert-tensorflow` package)
fail, never skip, when the oracle is missing: a skipped comparison is a claim left untested."""

import re
import subprocess
import sys

import pytest

import e2e_util

# Every test here starts a subprocess or trains: `pytest -m "not slow"` skips the file.
pytestmark = pytest.mark.slow

ORACLE_TESTS = [
    "tests/test_modeling.py::test_parity_with_googles_original_modeling",
    "tests/test_tokenization.py::test_load_vocab_matches_original",
    "tests/test_optimization.py::test_matches_google_original_optimizer",
]


def test_oracle_tests_fail_without_their_oracle():
    # sys.modules["bert"] = None: `import bert` raises ImportError and find_spec gives None,
    # as when the package is not installed.
    code = ("import sys; sys.modules['bert'] = None; import pytest; "
            "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider'] + sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code] + ORACLE_TESTS, capture_output=True,
                          text=True, timeout=300, cwd=e2e_util.REPO_ROOT,
                          env=e2e_util.subprocess_env())
    summary = proc.stdout.strip().splitlines()[-1]  # e.g. "2 failed, 1 error in 3.30s"
    counts = {word.rstrip("s"): int(n) for n, word in re.findall(r"(\d+) (\w+)", summary)}
    assert proc.returncode == 1, proc.stdout[-3000:]
    # A fixture's pytest.fail counts as an error: both are failures, not skips.
    assert counts.get("failed", 0) + counts.get("error", 0) == len(ORACLE_TESTS), summary
    assert "skipped" not in counts and "passed" not in counts, summary
