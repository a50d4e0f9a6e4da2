"""Served throughput and latency on Triton Inference Server against ONNX Runtime in process, in one run.

Run: python -m seo_export.serve.bench [--model FILE.onnx] [--seq 128] [--concurrency 1 4 16]
     [--seconds 3] [--rounds 2] [--protocol grpc http] [--out scripts/results] [--name serve_bench]

One model (by default a modest zoo model exported here: 4 layers, hidden 256, local attention, learned
positions) and one pool of batch-1 requests [1, seq]. Measured, each point as a closed loop for
``--seconds``, the points alternating over ``--rounds`` rounds so machine noise hits them alike:

- in process, one caller: ``session.run`` on batches of 1, 4, 8 and 16 rows made of the same requests
  (the best of them is the "best in-process batched throughput");
- in process, C threads sharing one session, batch 1 each (what a server without batching could do);
- served: C clients (threads, one tritonclient each) sending batch-1 requests to the python-backend
  model `seo-export triton-repo` writes, over gRPC and HTTP; Triton's statistics give how many rows
  each execution ran (dynamic batching) and the server-side queue and compute time.

The session is `backends.ort_runner.create_session`'s, as the served model.py sets it up. Clients,
server and in-process runs share this machine's cores, so served numbers include the clients' own CPU
time. Goals (issue 15): served throughput at 16 clients >= 80% of the best in-process batched
throughput; served p50 at one client within 5 ms of in process (batch 1).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from seo_export.bench.results import write_results
from seo_export.utils.environment import collect_environment, load_average
from seo_export.utils.timing import median, percentile

NAME = "bench"
OUTPUTS = ("last_hidden_state", "pooler_output")
BATCHES = (1, 4, 8, 16)


def default_config():
    from seo_export.models import TransformerConfig

    return TransformerConfig(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024, vocab_size=8000,
                             attention_type="local", attention_window_size=32, positional_encoding_type="learned",
                             positional_encoding_max_len=512, dropout_rate=0.0, attention_dropout=0.0)


def requests(count: int, seq: int, vocab_size: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(count):
        ids = rng.integers(1, vocab_size, size=(1, seq), dtype=np.int64)
        pool.append({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    return pool


def summary(latencies_s: list[float], rows: int, elapsed_s: float) -> dict:
    ms = [t * 1e3 for t in latencies_s]
    return {"calls": len(ms), "rows": rows, "seconds": round(elapsed_s, 3),
            "throughput_rows_per_s": round(rows / elapsed_s, 2) if elapsed_s > 0 else 0.0,
            "p50_ms": round(median(ms), 3) if ms else None, "p99_ms": round(percentile(ms, 99), 3) if ms else None}


def closed_loop(workers: int, make_call, seconds: float) -> tuple[list[float], float]:
    """``workers`` threads, each calling ``make_call(worker)()`` back to back until ``seconds`` pass;
    (every call's latency, wall time). ``make_call`` runs in the worker's thread (gevent clients need that)."""
    latencies: list[list[float]] = [[] for _ in range(workers)]
    window = [0.0, 0.0]  # start, deadline: set once every worker is warm, before any is released

    def begin() -> None:
        window[0] = time.perf_counter()
        window[1] = window[0] + seconds

    barrier = threading.Barrier(workers + 1, action=begin)

    def worker(index: int) -> None:
        call = make_call(index)
        try:
            call()  # warm: connections, first-call allocations
            barrier.wait()
            while time.perf_counter() < window[1]:
                t0 = time.perf_counter()
                call()
                latencies[index].append(time.perf_counter() - t0)
        finally:
            getattr(call, "close", lambda: None)()

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(worker, i) for i in range(workers)]
        barrier.wait()
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - window[0]
    return [t for per_worker in latencies for t in per_worker], elapsed


class _LocalCall:
    """``session.run`` on the requests of ``pool`` from ``first`` in steps of ``step``."""

    def __init__(self, session, pool, first: int, step: int):
        self.session, self.pool, self.index, self.step = session, pool, first, step

    def __call__(self):
        feeds = self.pool[self.index % len(self.pool)]
        self.index += self.step
        return self.session.run(None, feeds)


class _Call:
    """A client call on one request in a loop over the pool; ``close`` closes the client."""

    def __init__(self, client, module, pool, first: int, step: int):
        self.client, self.module, self.pool, self.index, self.step = client, module, pool, first, step

    def __call__(self):
        feeds = self.pool[self.index % len(self.pool)]
        self.index += self.step
        inputs = []
        for name, array in feeds.items():
            tensor = self.module.InferInput(name, list(array.shape), "INT64")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        outputs = [self.module.InferRequestedOutput(name) for name in OUTPUTS]
        return self.client.infer(NAME, inputs, outputs=outputs)

    def close(self):
        self.client.close()


def _client(protocol: str, server):
    if protocol == "grpc":
        import tritonclient.grpc as module

        return module.InferenceServerClient(server.grpc_url), module
    import tritonclient.http as module

    return module.InferenceServerClient(server.http_url, connection_timeout=60, network_timeout=60), module


def _stats(server) -> dict:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        stats = client.get_inference_statistics(NAME, as_json=True)["model_stats"][0]
    finally:
        client.close()
    inference = stats["inference_stats"]
    return {"inferences": int(stats.get("inference_count", 0)), "executions": int(stats.get("execution_count", 0)),
            **{f"{k}_ns": int(inference.get(k, {}).get("ns", 0)) for k in ("queue", "compute_infer")}}


def measure(model: Path, seq: int, concurrency: list[int], seconds: float, rounds: int, protocols: list[str],
            max_queue_delay_us: int, instances: int, progress=print) -> dict:
    from seo_export.backends.ort_runner import create_session
    from seo_export.export.inspect import config_from_onnx, load_onnx
    from seo_export.serve.repository import write_repository
    from seo_export.serve.runtime import ensure_runtime
    from seo_export.serve.server import ServerOptions, TritonServer, free_port, temporary_log

    config = config_from_onnx(load_onnx(model))
    pool = requests(64, seq, config.vocab_size)
    session = create_session(model, ["CPUExecutionProvider"])
    batched = {b: {k: np.concatenate([r[k] for r in pool[:b]]) for k in pool[0]} for b in BATCHES}

    points: dict[str, dict] = {}
    for b in BATCHES:
        points[f"in-process batch {b}"] = {"kind": "in-process", "batch": b, "clients": 1,
                                           "call": lambda worker, b=b: _LocalCall(session, [batched[b]], 0, 1)}
    for c in concurrency:
        if c > 1:
            points[f"in-process {c} threads"] = {"kind": "in-process threads", "batch": 1, "clients": c,
                                                 "call": lambda worker, c=c: _LocalCall(session, pool, worker, c)}

    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        repo = Path(tmp) / "repo"
        write_repository(model, repo, name=NAME, max_batch_size=max(max(BATCHES), max(concurrency)),
                         instances=instances, max_queue_delay_us=max_queue_delay_us)
        runtime = ensure_runtime(notice=progress)
        options = ServerOptions(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                                exit_timeout_s=2)
        log = temporary_log("serve-bench-")
        with TritonServer(runtime, repo, options, log_path=log).start(ready_timeout_s=120) as server:
            for protocol in protocols:
                for c in concurrency:
                    def make(worker, protocol=protocol, c=c):
                        client, module = _client(protocol, server)
                        return _Call(client, module, pool, worker, c)

                    points[f"served {protocol} {c} clients"] = {"kind": f"served {protocol}", "batch": 1, "clients": c,
                                                                "call": make}
            samples = {name: {"latencies": [], "rows": 0, "seconds": 0.0, "stats": []} for name in points}
            for round_index in range(rounds):
                for name, point in points.items():
                    before = _stats(server) if point["kind"].startswith("served") else None
                    latencies, elapsed = closed_loop(point["clients"], point["call"], seconds / rounds)
                    entry = samples[name]
                    entry["latencies"] += latencies
                    entry["rows"] += len(latencies) * point["batch"]
                    entry["seconds"] += elapsed
                    if before is not None:
                        after = _stats(server)
                        entry["stats"].append({k: after[k] - before[k] for k in after})
                    progress(f"round {round_index + 1}/{rounds} {name}: "
                             f"{len(latencies) * point['batch'] / elapsed:.1f} rows/s")
        log.unlink(missing_ok=True)

    results = []
    for name, point in points.items():
        entry = samples[name]
        row = {"point": name, "kind": point["kind"], "batch": point["batch"], "clients": point["clients"],
               **summary(entry["latencies"], entry["rows"], entry["seconds"])}
        if entry["stats"]:
            total = {k: sum(s[k] for s in entry["stats"]) for k in entry["stats"][0]}
            row["server"] = {
                "inferences": total["inferences"], "executions": total["executions"],
                "rows_per_execution": (round(total["inferences"] / total["executions"], 2)
                                       if total["executions"] else None),
                "queue_ms_per_request": round(total["queue_ns"] / 1e6 / max(1, total["inferences"]), 3),
                "compute_ms_per_execution": round(total["compute_infer_ns"] / 1e6 / max(1, total["executions"]), 3)}
        results.append(row)
    return {"config": config.to_dict(), "seq": seq, "results": results}


def goals(result: dict) -> list[dict]:
    by_point = {r["point"]: r for r in result["results"]}
    best = max((r for r in result["results"] if r["kind"] == "in-process"), key=lambda r: r["throughput_rows_per_s"])
    single = by_point["in-process batch 1"]
    checks = []
    for protocol in sorted({r["kind"].split()[1] for r in result["results"] if r["kind"].startswith("served")}):
        served = [r for r in result["results"] if r["kind"] == f"served {protocol}"]
        most = max(served, key=lambda r: r["clients"])
        one = min(served, key=lambda r: r["clients"])
        ratio = most["throughput_rows_per_s"] / best["throughput_rows_per_s"]
        checks.append({"goal": f"{protocol}: served throughput at {most['clients']} clients >= 80% of the best "
                               f"in-process batched ({best['point']})",
                       "value": f"{ratio:.0%}", "met": ratio >= 0.8})
        gap = one["p50_ms"] - single["p50_ms"]
        checks.append({"goal": f"{protocol}: served p50 at {one['clients']} client within 5 ms of in-process batch 1",
                       "value": f"{gap:+.2f} ms", "met": gap <= 5.0})
    return checks


def to_markdown(result: dict) -> str:
    c = result["config"]
    env = result["environment"]
    lines = [
        "# Served on Triton Inference Server against ONNX Runtime in process",
        "",
        f"`python -m seo_export.serve.bench {' '.join(result['argv'])}` — model: {c['num_layers']} layers, hidden "
        f"{c['hidden_size']}, {c['attention_type']} attention, {c['positional_encoding_type']} positions; requests "
        f"[1, {result['seq']}]; {result['seconds']} s per point over {result['rounds']} rounds. Server: Triton "
        f"{result['server']['triton']} (nvidia-pytriton {result['server']['pytriton']}), python backend, "
        f"{result['server']['instances']} instance(s), dynamic batching (max queue delay "
        f"{result['server']['max_queue_delay_us']} us). Machine: {env['cpu']['model']}, {env['cpu']['count']} cores "
        f"(load average {result['load_average']}); clients, server and in-process runs share these cores.",
        "",
        "| point | rows/call | clients | rows/s | p50 ms | p99 ms | rows per execution | queue ms/request |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["results"]:
        server = r.get("server") or {}
        lines.append(f"| {r['point']} | {r['batch']} | {r['clients']} | {r['throughput_rows_per_s']:.1f} | "
                     f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {server.get('rows_per_execution', '')} | "
                     f"{server.get('queue_ms_per_request', '')} |")
    lines += ["", "| goal | measured | met |", "|---|---:|---|"]
    lines += [f"| {g['goal']} | {g['value']} | {'yes' if g['met'] else 'no'} |" for g in result["goals"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    import sys

    from seo_export.serve.runtime import PYTRITON_VERSION, TRITON_SERVER_VERSION

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="an exported .onnx file (default: export the modest model here)")
    parser.add_argument("--seq", type=int, default=128, help="tokens per request (default 128)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per point, split over the rounds")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--protocol", nargs="+", choices=("grpc", "http"), default=["grpc", "http"])
    parser.add_argument("--max-queue-delay-us", type=int, default=0)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--out", default="scripts/results")
    parser.add_argument("--name", default="serve_bench")
    args = parser.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)

    with tempfile.TemporaryDirectory(prefix="serve-bench-model-") as tmp:
        model = args.model
        if model is None:
            from seo_export.export import export_onnx
            from seo_export.models.build import build_model

            model = Path(tmp) / "model.onnx"
            print(f"exporting the default model to {model}", flush=True)
            export_onnx(build_model(default_config(), seed=0), model)
        result = measure(model, args.seq, args.concurrency, args.seconds, args.rounds, args.protocol,
                         args.max_queue_delay_us, args.instances,
                         progress=lambda message: print(message, flush=True))
    result.update({"argv": argv, "seconds": args.seconds, "rounds": args.rounds, "load_average": load_average(),
                   "environment": collect_environment(),
                   "server": {"triton": TRITON_SERVER_VERSION, "pytriton": PYTRITON_VERSION,
                              "instances": args.instances,
                              "max_queue_delay_us": args.max_queue_delay_us}})
    result["goals"] = goals(result)
    markdown = to_markdown(result)
    write_results(args.out, args.name, result, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
