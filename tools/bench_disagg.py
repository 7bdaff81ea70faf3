#!/usr/bin/env python3
"""Disaggregated against colocated serving, on the same cores, trace and SLOs, in one run.

  1. colocated: `shardserve serve --groups=G` (G "both" groups, one worker each);
     disaggregated: `shardserve serve --prefill_groups=P --decode_groups=D` with P + D = G
     workers, so both layouts get the same number of worker processes and threads;
  2. unloaded: one request at a time on the colocated cluster gives TTFT and TPOT; the SLOs are
     --slo_factor times those (the same for both layouts);
  3. loaded: the same Poisson trace (`shardserve bench` with a fixed seed, --request_rate,
     --num_prompts) against each layout, with those SLOs: goodput (requests/s meeting both) and
     p99 inter-token latency;
  4. KV transfer: the prefill workers' shardserve_kv_transfer_bytes_total and
     shardserve_kv_transfer_seconds (from their /metrics) give the transport's throughput as
     served; `kv_transport_bench` then moves the same bytes per prompt through the transport and
     through a raw TCP socket, in the same run, for the ratio.
Prints a table and the ratios the disaggregation targets are stated in.

  bazel build -c opt //tools:shardserve //worker/comm:kv_transport_bench
  python3 tools/bench_disagg.py --shardserve bazel-bin/tools/shardserve \\
      --kv_bench bazel-bin/worker/comm/kv_transport_bench
"""
import argparse
import json
import re
import subprocess
import sys

from serve_process import ServeProcess, free_port


def bench(args, address, num_prompts, rate, concurrency=0, slo=None, seed=1):
    cmd = [args.shardserve, "bench", f"--server={address}", f"--num_prompts={num_prompts}",
           f"--request_rate={rate}", f"--max_concurrency={concurrency}",
           f"--input_len={args.input_len}", f"--output_len={args.output_len}", "--json",
           f"--seed={seed}", "--warmup=2"]
    if slo:
        cmd += [f"--slo_ttft_ms={slo[0]:.1f}", f"--slo_tpot_ms={slo[1]:.2f}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def kv_bench(args, tokens):
    out = subprocess.run(
        [args.kv_bench, f"--tokens={tokens}", "--iters=30",
         f"--kv_cache_dtype={args.kv_cache_dtype}"], check=True, capture_output=True,
        text=True).stdout
    m = re.search(r"ratio transport / raw \(medians\): ([0-9.]+)x", out)
    return out, float(m.group(1)) if m else None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shardserve", required=True)
    p.add_argument("--kv_bench", required=True)
    p.add_argument("--model", default="smollm2")
    p.add_argument("--workers", type=int, default=2, help="worker processes in each layout")
    p.add_argument("--prefill_groups", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="threads per worker")
    p.add_argument("--max_num_batched_tokens", type=int, default=256)
    p.add_argument("--input_len", type=int, default=512)
    p.add_argument("--output_len", type=int, default=64)
    p.add_argument("--num_prompts", type=int, default=48)
    p.add_argument("--request_rate", type=float, default=1.0)
    p.add_argument("--slo_factor", type=float, default=3.0)
    p.add_argument("--kv_cache_dtype", choices=("f16", "f32"), default="f16",
                   help="every worker's KV cache dtype, and the transport benchmark's")
    args = p.parse_args()

    decode_groups = args.workers - args.prefill_groups
    layouts = {
        "colocated": ([f"--groups={args.workers}"], args.workers),
        "disaggregated": ([f"--prefill_groups={args.prefill_groups}",
                           f"--decode_groups={decode_groups}"], args.workers),
    }
    results = {}
    slo = None
    kv = None
    for name in ("colocated", "disaggregated"):
        flags, workers = layouts[name]
        serve = ServeProcess(args.shardserve, args.model,
                             [f"--threads={args.threads}",
                              f"--max_num_batched_tokens={args.max_num_batched_tokens}",
                              f"--kv_cache_dtype={args.kv_cache_dtype}"] + flags,
                             metrics_port=free_port(), num_workers=workers)
        try:
            if slo is None:
                unloaded = bench(args, serve.address, 6, "inf", concurrency=1, seed=7)
                slo = (args.slo_factor * unloaded["p50_ttft_ms"],
                       args.slo_factor * unloaded["p50_tpot_ms"])
                print(f"unloaded (colocated, one at a time): TTFT p50 {unloaded['p50_ttft_ms']:.1f}"
                      f" ms, TPOT p50 {unloaded['p50_tpot_ms']:.2f} ms -> SLOs TTFT "
                      f"{slo[0]:.1f} ms, TPOT {slo[1]:.2f} ms", flush=True)
            results[name] = bench(args, serve.address, args.num_prompts, args.request_rate,
                                  slo=slo, seed=1)
            if name == "disaggregated":
                kv = (serve.metric_sum("shardserve_kv_transfer_bytes_total"),
                      serve.metric_sum("shardserve_kv_transfer_seconds_sum"),
                      serve.metric_sum("shardserve_kv_transfer_seconds_count"),
                      serve.metric_sum("shardserve_kv_transfer_failures_total"))
        finally:
            serve.stop()

    print(f"\n{args.num_prompts} requests, Poisson {args.request_rate}/s, input {args.input_len}, "
          f"output {args.output_len}, {args.workers} workers x {args.threads} thread(s)")
    print(f"{'layout':<15}{'goodput req/s':>14}{'good':>7}{'failed':>8}{'TTFT p50':>10}"
          f"{'TTFT p99':>10}{'ITL p50':>9}{'ITL p99':>9}{'out tok/s':>11}")
    for name, r in results.items():
        print(f"{name:<15}{r['goodput']:>14.3f}{r['good_requests']:>7}{r['failed_requests']:>8}"
              f"{r['p50_ttft_ms']:>10.1f}{r['p99_ttft_ms']:>10.1f}{r['p50_itl_ms']:>9.1f}"
              f"{r['p99_itl_ms']:>9.1f}{r['output_throughput']:>11.1f}")
    c, d = results["colocated"], results["disaggregated"]
    print(f"p99 ITL disaggregated / colocated: {d['p99_itl_ms'] / c['p99_itl_ms']:.2f}x "
          f"(target <= 0.8)")
    if c["goodput"] > 0:
        print(f"goodput disaggregated / colocated: {d['goodput'] / c['goodput']:.2f}x "
              f"(target >= 1.0)")
    if kv and kv[2] > 0:
        per_prompt = kv[0] / kv[2]
        print(f"KV transfers: {int(kv[2])} ({int(kv[3])} failed), {kv[0] / 1e6:.1f} MB, "
              f"{per_prompt / 1e6:.2f} MB per prompt; mean window from the first layer sent to "
              f"the last confirmation {1000 * kv[1] / kv[2]:.0f} ms (it spans the prefill's "
              f"compute, which the sends overlap)")
        # SmolLM2's KV per token: 30 layers x 3 KV heads x 64 dims x (K, V) x element bytes.
        elem_bytes = 2 if args.kv_cache_dtype == "f16" else 4
        tokens = max(1, round(per_prompt / (30 * 3 * 64 * 2 * elem_bytes)))
        out, ratio = kv_bench(args, tokens)
        print(out.strip())
        if ratio is not None:
            print(f"KV transport / raw TCP for {tokens}-token prompts: {ratio:.2f}x "
                  f"(target >= 0.8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
