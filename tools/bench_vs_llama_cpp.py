#!/usr/bin/env python3
"""Benchmarks shardserve's engine against llama.cpp on the same GGUF, side by side.

For each thread count, runs `shardserve bench-engine` (a subprocess) and llama.cpp (through the
PyPI package llama-cpp-python, in this process) in alternation, several rounds, on the same
prompt token ids: prefill of a 512-token prompt, and greedy decode of 128 tokens at batch 1.
Prints tokens/s for both, the ratios (ours / llama.cpp, median over rounds), shardserve's
effective weight bandwidth during decode and the memory read bandwidth it measured.

  tools/setup.sh --with-reference
  bazel build //tools:shardserve
  python3 tools/bench_vs_llama_cpp.py --shardserve bazel-bin/tools/shardserve --threads 1,2
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def run_ours(binary, model, threads, prefill, decode):
    out = subprocess.run(
        [binary, "bench-engine", f"--model={model}", f"--threads={threads}",
         f"--prefill_tokens={prefill}", f"--decode_tokens={decode}", "--repeats=1"],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_llama(llm, prompt_ids, decode):
    import numpy as np
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompt_ids)
    prefill_s = time.perf_counter() - t0
    llm.reset()
    llm.eval(prompt_ids[:8])
    tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    t0 = time.perf_counter()
    for _ in range(decode):
        llm.eval([tok])
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    decode_s = time.perf_counter() - t0
    return {"prefill_tokens_per_s": len(prompt_ids) / prefill_s,
            "decode_tokens_per_s": decode / decode_s}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shardserve", default="bazel-bin/tools/shardserve")
    ap.add_argument("--model", default="", help="GGUF path (default: the default model)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prefill_tokens", type=int, default=512)
    ap.add_argument("--decode_tokens", type=int, default=128)
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = ap.parse_args()

    model = args.model or subprocess.run(
        [os.path.join(os.path.dirname(__file__), "fetch_default_model.sh")],
        check=True, capture_output=True, text=True).stdout.strip()
    from llama_cpp import Llama, __version__ as llama_version

    print(f"model: {os.path.basename(model)}; llama-cpp-python {llama_version}; "
          f"cpus available: {len(os.sched_getaffinity(0))}")
    results = []
    for threads in [int(t) for t in args.threads.split(",")]:
        llm = Llama(model_path=model, n_ctx=2048, n_batch=args.prefill_tokens,
                    n_ubatch=args.prefill_tokens, n_threads=threads, n_threads_batch=threads,
                    verbose=False)
        ours_runs, peer_runs = [], []
        for _ in range(args.rounds):
            o = run_ours(args.shardserve, model, threads, args.prefill_tokens, args.decode_tokens)
            ours_runs.append(o)
            peer_runs.append(run_llama(llm, o["prompt_ids"], args.decode_tokens))
        del llm

        def med(runs, key):
            return statistics.median(r[key] for r in runs)

        row = {
            "threads": threads,
            "ours_prefill": med(ours_runs, "prefill_tokens_per_s"),
            "peer_prefill": med(peer_runs, "prefill_tokens_per_s"),
            "ours_decode": med(ours_runs, "decode_tokens_per_s"),
            "peer_decode": med(peer_runs, "decode_tokens_per_s"),
            "prefill_ratio": statistics.median(
                o["prefill_tokens_per_s"] / p["prefill_tokens_per_s"]
                for o, p in zip(ours_runs, peer_runs)),
            "decode_ratio": statistics.median(
                o["decode_tokens_per_s"] / p["decode_tokens_per_s"]
                for o, p in zip(ours_runs, peer_runs)),
            "weight_gb_per_s": med(ours_runs, "decode_weight_gb_per_s"),
            "memory_gb_per_s": med(ours_runs, "memory_read_gb_per_s"),
            "load_seconds": med(ours_runs, "load_seconds"),
        }
        results.append(row)

    print(f"{'threads':>7} | {'prefill tok/s ours / llama.cpp':>31} {'ratio':>6} | "
          f"{'decode tok/s ours / llama.cpp':>30} {'ratio':>6} | {'weights GB/s':>12} "
          f"{'memory GB/s':>11} | {'load s':>6}")
    for r in results:
        print(f"{r['threads']:>7} | {r['ours_prefill']:>14.1f} / {r['peer_prefill']:>14.1f} "
              f"{r['prefill_ratio']:>6.2f} | {r['ours_decode']:>13.1f} / {r['peer_decode']:>14.1f} "
              f"{r['decode_ratio']:>6.2f} | {r['weight_gb_per_s']:>12.2f} "
              f"{r['memory_gb_per_s']:>11.2f} | {r['load_seconds']:>6.3f}")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    sys.exit(main())
