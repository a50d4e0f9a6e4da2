"""The serving benchmark's goals and table from synthetic results (the benchmark itself is not a test)."""

from seo_export.serve.bench import closed_loop, goals, summary, to_markdown


def point(name, kind, batch, clients, rows_per_s, p50):
    return {"point": name, "kind": kind, "batch": batch, "clients": clients, "throughput_rows_per_s": rows_per_s,
            "p50_ms": p50, "p99_ms": p50 * 2}


def test_goals_compare_served_points_with_the_best_in_process_batch():
    result = {"results": [
        point("in-process batch 1", "in-process", 1, 1, 100.0, 8.0),
        point("in-process batch 16", "in-process", 16, 1, 130.0, 100.0),
        point("served grpc 1 clients", "served grpc", 1, 1, 90.0, 14.0),
        point("served grpc 16 clients", "served grpc", 1, 16, 110.0, 120.0),
    ]}
    checks = goals(result)
    assert [(c["value"], c["met"]) for c in checks] == [("85%", True), ("+6.00 ms", False)]
    result.update(config={"num_layers": 1, "hidden_size": 8, "attention_type": "local",
                          "positional_encoding_type": "learned"}, argv=[], seq=16, seconds=1, rounds=1,
                  load_average=0.5, environment={"cpu": {"model": "cpu", "count": 2}},
                  server={"triton": "2.51.0", "pytriton": "0.7.0", "instances": 1, "max_queue_delay_us": 0},
                  goals=checks)
    table = to_markdown(result)
    assert "| served grpc 16 clients | 1 | 16 | 110.0 |" in table and "| no |" in table


def test_closed_loop_runs_every_worker_for_the_window():
    calls = []
    latencies, elapsed = closed_loop(3, lambda worker: (lambda: calls.append(worker)), 0.05)
    assert 0.05 <= elapsed < 1 and len(latencies) == len(calls) - 3  # one warm call each, not timed
    assert set(calls) == {0, 1, 2}
    assert summary([0.001, 0.003], 2, 1.0)["p50_ms"] == 2.0
