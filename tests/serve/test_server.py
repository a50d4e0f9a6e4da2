"""A real Triton Inference Server over the repository, on 127.0.0.1: HTTP and gRPC answers equal ONNX Runtime
in process, concurrent clients are batched, malformed requests get errors while serving goes on, the text
entry point equals `seo-export run --text`, and SIGTERM to `seo-export serve` ends every process it started."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from seo_export.backends.ort_runner import create_session
from tests.export.helpers import padded_inputs
from tests.serve.conftest import CONFIG, NAME, need_serve_extra

OUTPUTS = ("last_hidden_state", "pooler_output")

need_serve_extra()


def http_client(server):
    import tritonclient.http as httpclient

    return httpclient.InferenceServerClient(server.http_url, concurrency=1, network_timeout=30)


def grpc_client(server):
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(server.grpc_url)


def infer(client, feeds, model=NAME):
    module = sys.modules[type(client).__module__.rpartition(".")[0]]
    inputs = []
    for name, array in feeds.items():
        datatype = {np.dtype(np.int64): "INT64", np.dtype(np.int32): "INT32", np.dtype(object): "BYTES"}[array.dtype]
        tensor = module.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer(model, inputs)
    return {name: result.as_numpy(name) for name in OUTPUTS}


@pytest.fixture(scope="module")
def session(files):
    return create_session(files["onnx"], ["CPUExecutionProvider"])


def local(session, feeds):
    return dict(zip(OUTPUTS, session.run(list(OUTPUTS), feeds)))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_outputs_equal_onnx_runtime_in_process_on_padded_batches(server, session, protocol):
    client = http_client(server) if protocol == "http" else grpc_client(server)
    try:
        for batch, seq in ((1, 1), (3, 13), (2, 41)):
            feeds = padded_inputs(batch, seq)  # a full row, a right-padded row, a fully padded row
            served, expected = infer(client, feeds), local(session, feeds)
            for name in OUTPUTS:
                assert served[name].shape == expected[name].shape and served[name].dtype == np.float32
                np.testing.assert_array_equal(served[name], expected[name])
    finally:
        client.close()


def test_concurrent_clients_are_all_answered_right_and_batched(server, session):
    clients = 16
    rng = np.random.default_rng(1)
    requests = []
    for _ in range(clients * 6):
        ids = rng.integers(1, CONFIG.vocab_size, size=(1, 24), dtype=np.int64)
        requests.append({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    stats_client = http_client(server)

    def counts():
        stats = stats_client.get_inference_statistics(NAME)["model_stats"][0]
        return int(stats["inference_count"]), int(stats["execution_count"])

    before = counts()
    answers = {}

    def client_thread(first):  # tritonclient.http runs on gevent: a client belongs to the thread that made it
        client = http_client(server)
        try:
            for index in range(first, len(requests), clients):
                answers[index] = infer(client, requests[index])
        finally:
            client.close()

    with concurrent.futures.ThreadPoolExecutor(clients) as executor:
        for future in [executor.submit(client_thread, first) for first in range(clients)]:
            future.result()
    for index, feeds in enumerate(requests):
        expected = local(session, feeds)
        for name in OUTPUTS:  # a row computed inside a larger batch may differ in the last bits
            np.testing.assert_allclose(answers[index][name], expected[name], rtol=1e-5, atol=1e-5)
    after = counts()
    stats_client.close()
    inferences, executions = after[0] - before[0], after[1] - before[1]
    assert inferences == len(requests)
    assert executions < inferences, f"{inferences} rows in {executions} executions: nothing was batched"


def expect_error(client, feeds, *fragments, model=NAME):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as caught:
        infer(client, feeds, model)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_malformed_requests_get_errors_and_serving_goes_on(server, session, protocol):
    client = http_client(server) if protocol == "http" else grpc_client(server)
    good = padded_inputs(2, 9)
    ids, mask = good["input_ids"], good["attention_mask"]
    limit = CONFIG.positional_encoding_max_len
    cases = [
        ({"input_ids": ids.astype(np.int32), "attention_mask": mask}, ("INT32", "input_ids")),  # refused by Triton
        ({"input_ids": ids[:, :, None], "attention_mask": mask[:, :, None]}, ("shape",)),  # rank 3, by Triton
        ({"input_ids": ids}, ("attention_mask",)),  # missing input, by Triton
        ({"input_ids": ids, "attention_mask": mask[:, :5]}, ("must have the same shape",)),  # by model.py
        ({"input_ids": np.ones((1, limit + 1), np.int64), "attention_mask": np.ones((1, limit + 1), np.int64)},
         (f"sequence length {limit + 1} is over the model's limit of {limit}",)),
        ({"input_ids": ids + CONFIG.vocab_size, "attention_mask": mask}, ("outside the vocabulary",)),
        ({"input_ids": ids, "attention_mask": mask * 3}, ("only 0 and 1",)),
    ]
    try:
        for feeds, fragments in cases:
            expect_error(client, feeds, *fragments)
            assert server.process.poll() is None and server.is_ready()
            served, expected = infer(client, good), local(session, good)  # the instance still serves
            np.testing.assert_array_equal(served["last_hidden_state"], expected["last_hidden_state"])
    finally:
        client.close()


def test_text_entry_point_equals_run_text(server, files, tmp_path):
    from seo_export.cli.main import main

    texts = ["Search engines rank pages.", "Café über naïve text about the quality of every page."]
    out = tmp_path / "run.npz"
    assert main(["run", str(files["onnx"]), "--tokenizer", str(files["tokenizer"]), "--text", texts[0],
                 "--text", texts[1], "--output", str(out), "--warmup", "0", "--iterations", "1"]) == 0
    with np.load(out) as data:
        expected = {name: data[name] for name in OUTPUTS}
    client = grpc_client(server)
    try:
        served = infer(client, {"text": np.array([[t.encode()] for t in texts], dtype=object)}, model=f"{NAME}_text")
        for name in OUTPUTS:
            np.testing.assert_array_equal(served[name], expected[name])
        long = " ".join(["page"] * 200)
        expect_error(client, {"text": np.array([[long.encode()]], dtype=object)}, "text 1 has 202 tokens",
                     f"the model takes at most {CONFIG.positional_encoding_max_len}", model=f"{NAME}_text")
        expect_error(client, {"text": np.array([[b"fine"], [b"  "]], dtype=object)}, "text 2 is empty",
                     model=f"{NAME}_text")
        assert infer(client, {"text": np.array([[texts[0].encode()]], dtype=object)},
                     model=f"{NAME}_text")["pooler_output"].shape == (1, CONFIG.hidden_size)
    finally:
        client.close()


def test_metrics_are_exported(server):
    import urllib.request

    with urllib.request.urlopen(server.metrics_url, timeout=5) as response:
        text = response.read().decode()
    assert f'nv_inference_request_success{{model="{NAME}",version="1"}}' in text


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def test_sigterm_to_seo_export_serve_ends_everything(runtime, files):
    from seo_export.serve.server import free_port

    ports = [str(free_port()) for _ in range(3)]
    env = dict(os.environ, SEO_EXPORT_SERVE_ENV=str(runtime.root))
    process = subprocess.Popen([sys.executable, "-m", "seo_export.cli.main", "serve", str(files["repo"]),
                                "--http-port", ports[0], "--grpc-port", ports[1], "--metrics-port", ports[2],
                                "--exit-timeout", "3"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready = ""
        deadline = time.monotonic() + 90
        while "ready on" not in ready and time.monotonic() < deadline and process.poll() is None:
            ready = process.stdout.readline()
        assert "ready on" in ready and f"127.0.0.1:{ports[0]}" in ready, ready
        started = descendants(process.pid)
        assert len(started) >= 2  # tritonserver and the stubs of its python models
        shm = [f for f in os.listdir("/dev/shm") if f.startswith(f"seoexport_{process.pid}_")]
        assert shm
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert time.monotonic() - began < 10
        assert [pid for pid in started if os.path.exists(f"/proc/{pid}") and
                open(f"/proc/{pid}/stat").read().split(") ")[1][0] != "Z"] == []
        assert [f for f in os.listdir("/dev/shm") if f.startswith(f"seoexport_{process.pid}_")] == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in descendants(process.pid):
            os.kill(pid, signal.SIGKILL)
