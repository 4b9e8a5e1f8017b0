"""Writers of small task data sets in the real file formats (GLUE MRPC/CoLA/MNLI, XNLI, sim).

Each `write_*(directory)` creates the task's train/dev/test files under `directory` (made if
missing) and returns the number of examples its processor yields per split, e.g.
{"train": 30, "dev": 12, "test": 10}. Texts are deterministic; several rows are long
enough to need truncation at max_seq_length 32, some pairs have equally long halves (the
truncation tie), and some texts hold unbalanced quotes, accents or "NA"-like words.
"""
import csv
import os
from typing import Dict, List

SENTENCES: List[str] = [
    "Amrozi accused his brother, whom he called \"the witness\", of deliberately distorting "
    "his evidence.",
    "Referring to him as only \"the witness\", Amrozi accused his brother of deliberately "
    "distorting his evidence.",
    "The dog barked.",
    "Shares of Genentech, a much larger company with several products on the market, rose "
    "more than 2 percent in early trading on Tuesday after the announcement.",
    "NA",
    "null",
    "He said \"it's over and we won't be back",
    "Café owners in Zürich say the naïve rules hurt business; déjà vu, they add.",
    "Yucaipa owned Dominick's before selling the chain to Safeway in 1998 for $2.5 billion.",
    "Bill whistled past the house.",
    "The sailors rode the breeze clear of the rocks.",
    "Revenue in the first quarter of the year dropped 15 percent from the same period a year "
    "earlier, the company said in a statement released late on Thursday evening.",
    "None",
    "They drank the pub dry.",
    "It's a 'quoted' word and an apostrophe ' alone.",
    "The Nasdaq composite index rose 20.39, or 1.3 percent, to 1,621.40 after falling as much "
    "as 0.6 percent earlier in the session, traders said.",
    "nan",
    "Our friends won't buy this analysis, let alone the next one we propose.",
    "A cat sat on the mat, looked around, yawned twice, and then fell asleep in the warm "
    "afternoon sun that streamed through the tall kitchen windows of the old farmhouse.",
    "Tax cuts were approved.",
    "The judge ruled that the evidence was inadmissible because it had been obtained without "
    "a warrant, and the prosecution said it would appeal the decision to a higher court.",
    "Unbalanced \"quote at the start",
    "O'Neill met D'Arcy at 5 o'clock.",
    "The quick brown fox jumps over the lazy dog while the farmer watches from the porch and "
    "drinks his coffee slowly before starting another long day of work in the fields.",
]

ZH_SENTENCES: List[str] = [
    "他说他不会来参加今天晚上的会议。",
    "会议被取消了，因为下雨。",
    "我们在北京的一家小餐馆吃了饭，然后去公园散步，最后坐地铁回家，整个下午都很开心，天气也特别好。",
    "这本书很有意思。",
    "“你好”，她说。",
    "经济在过去的十年里增长得非常快，但是很多人认为这种增长不能持续下去，因为环境问题越来越严重了。",
]

NLI_LABELS = ["contradiction", "entailment", "neutral"]


def _pair(i: int, pool: List[str]) -> tuple:
    a = pool[i % len(pool)]
    # Every fifth pair repeats a text: equally long halves exercise the truncation tie.
    b = a if i % 5 == 4 else pool[(i * 7 + 3) % len(pool)]
    return a, b


def _write_lines(path: str, lines: List[str], newline: str = "\n") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        for line in lines:
            f.write(line + newline)


def write_mrpc(directory: str, n_train: int = 30, n_dev: int = 12, n_test: int = 10
               ) -> Dict[str, int]:
    """MRPC: "Quality\\t#1 ID\\t#2 ID\\t#1 String\\t#2 String" header; test's first column "index"."""
    for split, n in (("train", n_train), ("dev", n_dev)):
        lines = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
        for i in range(n):
            a, b = _pair(i + (100 if split == "dev" else 0), SENTENCES)
            lines.append("%d\t%d\t%d\t%s\t%s" % ((i * 3) % 2, 702876 + i, 702977 + i, a, b))
        _write_lines(os.path.join(directory, split + ".tsv"), lines)
    lines = ["index\t#1 ID\t#2 ID\t#1 String\t#2 String"]
    for i in range(n_test):
        a, b = _pair(i + 200, SENTENCES)
        lines.append("%d\t%d\t%d\t%s\t%s" % (i, 1089874 + i, 1089925 + i, a, b))
    _write_lines(os.path.join(directory, "test.tsv"), lines)
    return {"train": n_train, "dev": n_dev, "test": n_test}


def write_cola(directory: str, n_train: int = 30, n_dev: int = 12, n_test: int = 10
               ) -> Dict[str, int]:
    """CoLA: train/dev "source\\tlabel\\tstar\\tsentence" without header; test "index\\tsentence"."""
    for split, n in (("train", n_train), ("dev", n_dev)):
        lines = []
        for i in range(n):
            label = 1 if i % 3 else 0
            lines.append("gj04\t%d\t%s\t%s" % (label, "" if label else "*",
                                               SENTENCES[(i + (7 if split == "dev" else 0)) %
                                                         len(SENTENCES)]))
        _write_lines(os.path.join(directory, split + ".tsv"), lines)
    lines = ["index\tsentence"]
    for i in range(n_test):
        lines.append("%d\t%s" % (i, SENTENCES[(i * 5 + 1) % len(SENTENCES)]))
    _write_lines(os.path.join(directory, "test.tsv"), lines)
    return {"train": n_train, "dev": n_dev, "test": n_test}


def _parse(text: str) -> str:
    return "( ( %s ) )" % text


def write_mnli(directory: str, n_train: int = 30, n_dev: int = 12, n_test: int = 10
               ) -> Dict[str, int]:
    """MNLI: train.tsv (12 columns), dev_matched.tsv (16), test_matched.tsv (10), with headers."""
    head = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
            "sentence1_parse\tsentence2_parse\tsentence1\tsentence2")
    genres = ["government", "telephone", "fiction", "travel", "slate"]

    def base(i: int, offset: int) -> str:
        a, b = _pair(i + offset, SENTENCES)
        return "%d\t%d\t%de\t%s\t%s\t%s\t%s\t%s\t%s\t%s" % (
            i, 31193 + i, 31193 + i, genres[i % 5], _parse(a), _parse(b), _parse(a), _parse(b),
            a, b)

    lines = [head + "\tlabel1\tgold_label"]
    for i in range(n_train):
        label = NLI_LABELS[i % 3]
        lines.append(base(i, 0) + "\t%s\t%s" % (label, label))
    _write_lines(os.path.join(directory, "train.tsv"), lines)
    lines = [head + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label"]
    for i in range(n_dev):
        label = NLI_LABELS[(i + 1) % 3]
        lines.append(base(i, 50) + "\t%s" % label * 6)
    _write_lines(os.path.join(directory, "dev_matched.tsv"), lines)
    lines = [head]
    for i in range(n_test):
        lines.append(base(i, 80))
    _write_lines(os.path.join(directory, "test_matched.tsv"), lines)
    return {"train": n_train, "dev": n_dev, "test": n_test}


def write_xnli(directory: str, n_train: int = 30, n_dev: int = 24) -> Dict[str, int]:
    """XNLI: multinli/multinli.train.zh.tsv ("contradictory" spelling) and xnli.dev.tsv
    (19 columns, rows of several languages; only "zh" rows become examples). No test set."""
    lines = ["premise\thypo\tlabel"]
    train_labels = ["contradictory", "entailment", "neutral"]
    for i in range(n_train):
        a, b = _pair(i, ZH_SENTENCES)
        lines.append("%s\t%s\t%s" % (a, b, train_labels[i % 3]))
    _write_lines(os.path.join(directory, "multinli", "multinli.train.zh.tsv"), lines)
    lines = ["language\tgold_label\tsentence1_binary_parse\tsentence2_binary_parse\t"
             "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tpromptID\tpairID\tgenre\t"
             "label1\tlabel2\tlabel3\tlabel4\tlabel5\tsentence1_tokenized\tsentence2_tokenized\t"
             "match"]
    languages = ["en", "zh", "fr"]
    n_zh = 0
    for i in range(n_dev):
        language = languages[i % 3]
        a, b = _pair(i, ZH_SENTENCES if language == "zh" else SENTENCES)
        n_zh += language == "zh"
        label = NLI_LABELS[i % 3]
        lines.append("\t".join([language, label, "", "", "", "", a, b, str(i), str(i), "facetoface",
                                label, label, label, label, label, a, b, "True"]))
    _write_lines(os.path.join(directory, "xnli.dev.tsv"), lines)
    return {"train": n_train, "dev": n_zh}


def write_sim(directory: str, ext: str = "tsv", header: bool = True, n_train: int = 30,
              n_dev: int = 12, n_test: int = 10) -> Dict[str, int]:
    """sim: train/dev with text_a, text_b, label; test with text_a, text_b only.

    `ext` "tsv" writes tab-separated lines with quotes as plain text; "csv" writes standard
    csv quoting. A few labels are written as "1.0"/"0.0", as pandas-exported files have.
    """
    if ext not in ("tsv", "csv"):
        raise ValueError("ext must be 'tsv' or 'csv', got %r" % ext)

    def write(split: str, rows: List[List[str]], with_label: bool) -> None:
        path = os.path.join(directory, "%s.%s" % (split, ext))
        os.makedirs(directory, exist_ok=True)
        names = ["text_a", "text_b", "label"] if with_label else ["text_a", "text_b"]
        all_rows = ([names] if header else []) + rows
        with open(path, "w", encoding="utf-8", newline="") as f:
            if ext == "csv":
                csv.writer(f, lineterminator="\n").writerows(all_rows)
            else:
                for row in all_rows:
                    f.write("\t".join(row) + "\n")

    for split, n, offset in (("train", n_train, 0), ("dev", n_dev, 30)):
        rows = []
        for i in range(n):
            a, b = _pair(i + offset, SENTENCES)
            label = "1" if (i + offset) % 5 == 4 or i % 3 == 0 else "0"
            if i % 7 == 6:
                label += ".0"
            rows.append([a, b, label])
        write(split, rows, True)
    write("test", [list(_pair(i + 60, SENTENCES)) for i in range(n_test)], False)
    return {"train": n_train, "dev": n_dev, "test": n_test}
