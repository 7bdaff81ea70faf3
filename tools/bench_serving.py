#!/usr/bin/env python3
"""Serving benchmark: shardserve's server path against its offline engine and llama.cpp's server.

In one run, on the same GGUF and the same machine:
  1. offline: `shardserve bench-engine --concurrency=C` (continuous batching in one process, no
     gRPC) for every concurrency C, and one request alone (its time to first token);
  2. served: a local cluster (`shardserve serve`, one worker with --threads) and
     `shardserve bench` at each concurrency (all requests at once, at most C in flight);
  3. reference: llama-cpp-python's OpenAI-compatible server (`python3 -m llama_cpp.server`) with
     the same threads, driven at each concurrency by the streaming client in this file.
Steps 1 and 2 run in --rounds rounds (offline and served at every concurrency, then the
zero-load probes), so that each round gives one paired value of each target ratio (served /
offline at the highest concurrency, served at the highest / served at 1, served TTFT minus
offline TTFT of a 16-token prompt alone); prints every round, the medians and ranges over
rounds, and shardserve / llama.cpp at each concurrency. Prompts are
--input_len tokens (random ids for shardserve, text of about that many tokens for llama.cpp,
whose completions endpoint takes text), outputs exactly --output_len tokens (EOS ignored, or
biased away for llama.cpp).

  tools/setup.sh --with-reference
  bazel build -c opt //tools:shardserve
  python3 tools/bench_serving.py --shardserve bazel-bin/tools/shardserve --threads 2
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from serve_process import ServeProcess, free_port, stop_process


def offline(args, concurrency, input_len=None, output_len=None, repeats=1):
    out = subprocess.run(
        [args.shardserve, "bench-engine", f"--model={args.model}", f"--threads={args.threads}",
         f"--concurrency={concurrency}", f"--input_len={input_len or args.input_len}",
         f"--output_len={output_len or args.output_len}", f"--repeats={repeats}"],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def served(args, address, concurrency, seed, input_len=None, output_len=None, num_prompts=None):
    num_prompts = num_prompts or max(args.min_prompts, 2 * concurrency)
    out = subprocess.run(
        [args.shardserve, "bench", f"--server={address}", f"--num_prompts={num_prompts}",
         "--request_rate=inf", f"--max_concurrency={concurrency}",
         f"--input_len={input_len or args.input_len}",
         f"--output_len={output_len or args.output_len}", "--json",
         f"--seed={seed}",  # fresh prompts per run: no prefix-cache hits
         f"--warmup={min(concurrency, 4)}"],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out)


class LlamaServer:
    """llama-cpp-python's OpenAI-compatible server on a free port."""

    def __init__(self, args):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile("w+", prefix="llama-server-", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", args.model,
             "--n_threads", str(args.threads), "--n_ctx", "4096", "--port", str(self.port),
             "--host", "127.0.0.1", "--interrupt_requests", "False"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("llama_cpp.server exited:\n" + open(self.log.name).read())
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/models", timeout=1)
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("llama_cpp.server did not start")

    def stop(self):
        stop_process(self.proc)


def llama_prompts(args, n):
    from llama_cpp import Llama
    vocab = Llama(model_path=args.model, vocab_only=True, verbose=False)
    prompts = []
    for i in range(n):
        text = f"Request {i}. " + "The history of the city begins with a small settlement. " * 64
        ids = vocab.tokenize(text.encode(), add_bos=False)[:args.input_len]
        prompts.append(vocab.detokenize(ids).decode("utf-8", "ignore"))
    eos = vocab.token_eos()
    return prompts, eos


def llama_request(port, prompt, args, eos, record):
    body = json.dumps({
        "prompt": prompt, "max_tokens": args.output_len, "temperature": 0, "stream": True,
        "logit_bias": {str(eos): -100.0},
    }).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    first = None
    tokens = 0
    with urllib.request.urlopen(req, timeout=600) as resp:
        for line in resp:
            line = line.strip()
            if not line.startswith(b"data:") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            if chunk["choices"] and chunk["choices"][0].get("text") is not None:
                tokens += 1
                if first is None:
                    first = time.perf_counter()
    record.append({"ttft": (first or time.perf_counter()) - start, "tokens": tokens,
                   "e2e": time.perf_counter() - start})


def llama_bench(server, args, concurrency, prompts, eos):
    num = max(args.min_prompts, 2 * concurrency)
    # Warm-up: one request, not counted.
    llama_request(server.port, prompts[-1], args, eos, [])
    records = []
    queue = list(range(num))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                i = queue.pop(0)
            llama_request(server.port, prompts[i % len(prompts)], args, eos, records)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    duration = time.perf_counter() - start
    tokens = sum(r["tokens"] for r in records)
    return {"output_throughput": tokens / duration,
            "mean_ttft_ms": 1e3 * statistics.mean(r["ttft"] for r in records),
            "completed": len(records), "mean_output_tokens": tokens / len(records)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shardserve", default="bazel-bin/tools/shardserve")
    p.add_argument("--model", default=os.path.expanduser(
        "~/.cache/shardserve/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")],
                   default=[1, 16])
    p.add_argument("--input_len", type=int, default=128)
    p.add_argument("--output_len", type=int, default=64)
    p.add_argument("--min_prompts", type=int, default=8)
    p.add_argument("--no_llama", action="store_true", help="skip the llama.cpp server")
    p.add_argument("--rounds", type=int, default=5,
                   help="rounds of offline and served runs at every concurrency; each gives "
                        "one paired ratio per target, and the medians are reported")
    args = p.parse_args()
    lo, hi = min(args.concurrency), max(args.concurrency)

    print(f"# {os.cpu_count()} cores, {args.threads} threads per engine, input {args.input_len}"
          f" tokens, output {args.output_len} tokens, {args.rounds} rounds", flush=True)
    # Rounds: in each, the offline engine and the server at every concurrency, then the
    # zero-load probes, one after the other. The targets are ratios of two measurements; taken
    # within one round they see the machine in about the same state, so each round gives one
    # paired ratio and the medians over rounds are what is reported (on a shared machine whose
    # speed drifts, ratios of measurements minutes apart mostly measure the drift).
    results = {"offline": {c: [] for c in args.concurrency},
               "served": {c: [] for c in args.concurrency}, "llama_cpp": {},
               "probe_offline_ttft_ms": [], "probe_served_ttft_ms": []}
    ratios = {"served_over_offline": [], "served_hi_over_lo": [], "offline_hi_over_lo": [],
              "offline_decode_gain": [], "ttft_overhead_ms": []}
    serve = ServeProcess(args.shardserve, args.model,
                         [f"--threads={args.threads}",
                          f"--max_num_seqs={max(64, max(args.concurrency))}"])
    try:
        for r in range(args.rounds):
            for c in args.concurrency:
                off = offline(args, c)
                srv = served(args, serve.address, c, seed=1000 * (r + 1) + c)
                results["offline"][c].append(off)
                results["served"][c].append(srv)
                print(f"round {r + 1}  c={c:3d}: offline {off['output_tokens_per_s']:7.1f}, served "
                      f"{srv['output_throughput']:7.1f} output tok/s (served TTFT mean "
                      f"{srv['mean_ttft_ms']:.1f} ms, TPOT mean {srv['mean_tpot_ms']:.1f} ms)",
                      flush=True)
            # Zero-load time to first token: a 16-token prompt alone, offline and served.
            probe_off = offline(args, 1, input_len=16, output_len=2, repeats=3)
            probe_srv = served(args, serve.address, 1, seed=1000 * (r + 1) + 999, input_len=16,
                               output_len=2, num_prompts=10)
            results["probe_offline_ttft_ms"].append(probe_off["single_request_ttft_ms"])
            results["probe_served_ttft_ms"].append(probe_srv["p50_ttft_ms"])
            print(f"round {r + 1}  TTFT of a 16-token prompt alone: offline "
                  f"{probe_off['single_request_ttft_ms']:.2f} ms (median of 3), served "
                  f"{probe_srv['p50_ttft_ms']:.2f} ms (p50 of 10)", flush=True)
            off_hi = results["offline"][hi][-1]["output_tokens_per_s"]
            off_lo = results["offline"][lo][-1]["output_tokens_per_s"]
            srv_hi = results["served"][hi][-1]["output_throughput"]
            srv_lo = results["served"][lo][-1]["output_throughput"]
            ratios["served_over_offline"].append(srv_hi / off_hi)
            ratios["served_hi_over_lo"].append(srv_hi / srv_lo)
            ratios["offline_hi_over_lo"].append(off_hi / off_lo)
            if "decode_gain" in results["offline"][hi][-1]:
                ratios["offline_decode_gain"].append(results["offline"][hi][-1]["decode_gain"])
            ratios["ttft_overhead_ms"].append(probe_srv["p50_ttft_ms"] -
                                              probe_off["single_request_ttft_ms"])
    finally:
        serve.stop()
    if not args.no_llama:
        prompts, eos = llama_prompts(args, 2 * hi + args.min_prompts)
        server = LlamaServer(args)
        try:
            for c in args.concurrency:
                results["llama_cpp"][c] = llama_bench(server, args, c, prompts, eos)
                r = results["llama_cpp"][c]
                print(f"llama.cpp c={c:3d}: {r['output_throughput']:8.1f} output tok/s, TTFT mean "
                      f"{r['mean_ttft_ms']:.1f} ms ({r['mean_output_tokens']:.0f} tokens/request)",
                      flush=True)
        finally:
            server.stop()

    def summary(values, fmt):
        return (f"median {fmt.format(statistics.median(values))} (range "
                f"{fmt.format(min(values))} - {fmt.format(max(values))} over {len(values)} rounds)")

    print(f"served / offline at c={hi}: {summary(ratios['served_over_offline'], '{:.3f}')}  "
          f"(target >= 0.9)")
    print(f"served c={hi} / served c={lo}: {summary(ratios['served_hi_over_lo'], '{:.2f}x')}  "
          f"(target >= 3)")
    print(f"offline c={hi} / offline c={lo}: {summary(ratios['offline_hi_over_lo'], '{:.2f}x')}")
    if ratios["offline_decode_gain"]:
        print(f"offline aggregate decode tokens/s, c={hi} / one request alone (prefill time "
              f"excluded): {summary(ratios['offline_decode_gain'], '{:.2f}x')}  (target >= 3)")
    print(f"zero-load TTFT overhead of the server path: "
          f"{summary(ratios['ttft_overhead_ms'], '{:.2f} ms')}  (target < 5)")
    for c in args.concurrency:
        if c in results["llama_cpp"]:
            ours = statistics.median(s["output_throughput"] for s in results["served"][c])
            ratio = ours / results["llama_cpp"][c]["output_throughput"]
            print(f"shardserve (median served) / llama.cpp server at c={c}: {ratio:.2f}x "
                  f"output tok/s")
    results["ratios"] = ratios
    print(json.dumps(results))


if __name__ == "__main__":
    main()
