"""Dev accuracy of the embedded sim job under --precision=float32 and --precision=bfloat16,
several seeds each: is bfloat16's accuracy within float32's seed-to-seed spread?

Every run is the default job (`examples/sim_bbc.flags`: MiniLM-L6 weights, 1,200 training
pairs, 2 epochs, dev 300 pairs) with `--do_predict=false --seed=S --precision=P`, in its own
`run_classifier.py` process; the script reads each run's `eval_results.txt`.

On a CPU without bfloat16 instructions run_classifier refuses --precision=bfloat16 (TensorFlow
would emulate it, slower than float32). This benchmark measures accuracy, not speed, so with
`--allow_emulated_bfloat16` it runs run_classifier with those checks told that the CPU has
bfloat16 and oneDNN ("emulated" in the log's precision line): the same bfloat16 roundings,
computed slowly.

    .venv/bin/python bench/precision_accuracy.py --seeds 1,2,3 --json /tmp/precision.json
    .venv/bin/python bench/precision_accuracy.py --allow_emulated_bfloat16   # AVX2-only CPUs
"""
import argparse
import json
import os
import subprocess
import sys
import time

from common import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "tests"))
from e2e_util import read_eval_results  # noqa: E402

# Runs run_classifier.py as __main__ after making precision.check_supported see a bfloat16 CPU.
_EMULATED = (
    "import sys, runpy; sys.path.insert(0, {root!r}); from bert_classifier.core import precision; "
    "precision.cpu_bfloat16_flags = lambda *a, **k: {{'emulated'}}; "
    "precision.onednn_enabled = lambda: True; "
    "sys.argv = ['run_classifier.py'] + sys.argv[1:]; "
    "runpy.run_path({script!r}, run_name='__main__')")


def run_one(precision: str, seed: int, output_root: str, emulate: bool) -> dict:
    output_dir = os.path.join(output_root, f"{precision}_seed{seed}")
    flags = ["--flagfile=examples/sim_bbc.flags", "--do_predict=false", f"--seed={seed}",
             f"--precision={precision}", f"--output_dir={output_dir}"]
    if emulate and precision == "bfloat16":
        command = [sys.executable, "-c", _EMULATED.format(
            root=REPO_ROOT, script=os.path.join(REPO_ROOT, "run_classifier.py"))] + flags
    else:
        command = [sys.executable, "run_classifier.py"] + flags
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{precision} seed {seed} failed (rc {done.returncode}):\n"
                         + done.stderr[-3000:])
    precision_line = next((line for line in done.stderr.splitlines() if "Precision:" in line),
                          "")
    result = read_eval_results(output_dir)
    return {"precision": precision, "seed": seed, "seconds": round(seconds, 1),
            "eval_accuracy": float(result["eval_accuracy"]),
            "eval_loss": float(result["eval_loss"]),
            "log": precision_line.split("Precision:")[-1].strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--precisions", default="float32,bfloat16")
    parser.add_argument("--output_root", default="/tmp/precision_accuracy")
    parser.add_argument("--allow_emulated_bfloat16", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from common import environment_line  # versions and thread settings, for the record
    print(environment_line(), flush=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for seed in seeds:  # seed-major, so an interrupted run still pairs the precisions
        for precision in args.precisions.split(","):
            row = run_one(precision, seed, args.output_root, args.allow_emulated_bfloat16)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| precision | seed | eval_accuracy | eval_loss | run s |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['precision']} | {row['seed']} | {row['eval_accuracy']:.4f} | "
              f"{row['eval_loss']:.4f} | {row['seconds']:.0f} |")
    by_precision = {}
    for row in rows:
        by_precision.setdefault(row["precision"], []).append(row["eval_accuracy"])
    summary = {p: {"min": min(v), "max": max(v), "mean": sum(v) / len(v)}
               for p, v in by_precision.items()}
    for p, s in summary.items():
        print(f"{p}: accuracy {s['min']:.4f}-{s['max']:.4f} (mean {s['mean']:.4f})")
    if "float32" in summary and "bfloat16" in summary:
        lo, hi = summary["float32"]["min"], summary["float32"]["max"]
        inside = all(lo <= a <= hi for a in by_precision["bfloat16"])
        print(f"bfloat16 within float32's seed spread [{lo:.4f}, {hi:.4f}]: {inside}")
        summary["bfloat16_within_float32_spread"] = inside
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
