"""`seo-export triton-repo`: what the repository holds, its configurations (parsed as Triton parses them),
the engine configuration from a manifest, the python model's request checks, and every refusal.
No server here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seo_export.backends.tensorrt.manifest import EngineManifest, Environment, write_manifest
from seo_export.backends.tensorrt.profiles import parse_profile
from seo_export.cli.main import main
from seo_export.serve import python_model, tokenizer_model
from seo_export.serve.repository import Tensor, engine_config, ensemble_config, python_config
from seo_export.utils.files import sha256_file
from tests.cli.test_build_run import tiny_onnx
from tests.serve.conftest import CONFIG, NAME
from tests.test_layering import imported


def parse(text: str):
    """The ModelConfig protobuf of a config.pbtxt, as the server reads it."""
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                                           reason='the serve extra is missing: pip install -e ".[serve]"')
    from google.protobuf import text_format

    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_an_onnx_repository_holds_both_configurations_the_file_and_a_self_contained_model(files):
    model = files["repo"] / NAME
    assert sorted(p.name for p in (model / "1").iterdir()) == ["model.onnx", "model.py", "seo_export_model.json"]
    assert sha256_file(model / "1" / "model.onnx") == sha256_file(files["onnx"])
    onnxruntime = parse((model / "config.pbtxt").read_text())
    python = parse((model / "configs" / "python.pbtxt").read_text())
    assert onnxruntime.platform == "onnxruntime_onnx" and python.backend == "python"
    for config in (onnxruntime, python):
        assert config.name == NAME and config.max_batch_size == 16
        assert config.HasField("dynamic_batching")
        assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
            ("input_ids", 9, [-1]), ("attention_mask", 9, [-1])]  # 9: TYPE_INT64
        assert [(o.name, list(o.dims)) for o in config.output] == [
            ("last_hidden_state", [-1, CONFIG.hidden_size]), ("pooler_output", [CONFIG.hidden_size])]
    settings = json.loads((model / "1" / "seo_export_model.json").read_text())
    assert settings["max_sequence_length"] == CONFIG.positional_encoding_max_len
    assert settings["vocab_size"] == CONFIG.vocab_size
    # model.py runs without torch and seo-export: it imports neither, even lazily.
    for template in (python_model, tokenizer_model):
        imports = {name.split(".")[0] for _, name in imported(template.__name__, open(template.__file__).read())}
        assert imports <= {"json", "os", "pathlib", "numpy", "onnxruntime", "tokenizers",
                           "triton_python_backend_utils"}, imports
    assert "numpy < 2" in (model / "README.md").read_text()


def test_the_text_entry_point_is_a_tokenizer_model_and_an_ensemble(files):
    tokenizer = parse((files["repo"] / f"{NAME}_tokenizer" / "config.pbtxt").read_text())
    ensemble = parse((files["repo"] / f"{NAME}_text" / "config.pbtxt").read_text())
    assert tokenizer.backend == "python" and [i.name for i in tokenizer.input] == ["text"]
    assert ensemble.platform == "ensemble"
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == [f"{NAME}_tokenizer", NAME]
    assert [o.name for o in ensemble.output] == ["last_hidden_state", "pooler_output"]
    settings = json.loads((files["repo"] / f"{NAME}_tokenizer" / "1" / "seo_export_tokenizer.json").read_text())
    assert settings["pad_id"] == 0 and settings["max_length"] == CONFIG.positional_encoding_max_len


def test_the_served_session_is_set_up_as_seo_exports_and_gives_the_same_outputs(files):
    """model.py's session (settings from the file) against backends.ort_runner.create_session."""
    from seo_export.backends.ort_runner import create_session
    from tests.export.helpers import padded_inputs

    settings = json.loads((files["repo"] / NAME / "1" / "seo_export_model.json").read_text())["session"]
    served = python_model.create_session(files["onnx"], settings, ["CPUExecutionProvider"])
    ours = create_session(files["onnx"], ["CPUExecutionProvider"])
    for key, value in settings["config_entries"].items():
        assert ours.get_session_options().get_session_config_entry(key) == value
    feeds = padded_inputs(3, 13)
    for a, b in zip(served.run(None, feeds), ours.run(None, feeds)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("change, fragment", [
    (lambda f: f.update(input_ids=f["input_ids"].astype(np.int32)), "must be INT64"),
    (lambda f: f.update(input_ids=f["input_ids"][0]), "rank 2"),
    (lambda f: f.update(attention_mask=f["attention_mask"][:, :5]), "must have the same shape"),
    (lambda f: f.update(input_ids=np.full((1, 40), 1, np.int64), attention_mask=np.ones((1, 40), np.int64)),
     "over the model's limit of 32"),
    (lambda f: f["input_ids"].__setitem__((0, 0), 300), "token id 300, outside the vocabulary [0, 300)"),
    (lambda f: f["input_ids"].__setitem__((0, 0), -1), "token id -1"),
    (lambda f: f["attention_mask"].__setitem__((0, 0), 2), "only 0 and 1"),
    (lambda f: f.pop("attention_mask"), "missing input attention_mask"),
    (lambda f: f.update(input_ids=np.zeros((1, 0), np.int64), attention_mask=np.zeros((1, 0), np.int64)), "empty"),
])
def test_request_checks_name_the_problem(change, fragment):
    feeds = {"input_ids": np.ones((2, 8), np.int64), "attention_mask": np.ones((2, 8), np.int64)}
    assert python_model.check_request(dict(feeds), 32, 300) is None
    change(feeds)
    problem = python_model.check_request(feeds, 32, 300)
    assert problem is not None and fragment in problem, problem


def test_the_tokenizer_model_encodes_as_seo_export_text(files):
    from seo_export.text import encode, load_tokenizer

    version = files["repo"] / f"{NAME}_tokenizer" / "1"
    settings = json.loads((version / "seo_export_tokenizer.json").read_text())
    tokenizer = tokenizer_model.load(version, settings)
    texts = ["Search engines rank pages.", "Café über naïve text about the quality of every page."]
    ours, problem = tokenizer_model.encode(tokenizer, texts, settings)
    assert problem is None
    theirs = encode(load_tokenizer(files["tokenizer"]), texts, (settings["max_length"], ""), False, vocab_size=300)
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name])
    assert tokenizer_model.encode(tokenizer, ["fine", " "], settings)[1] == "text 2 is empty"
    long = " ".join(["page"] * 200)
    problem = tokenizer_model.encode(tokenizer, [long], settings)[1]
    assert problem == "text 1 has 202 tokens; the model takes at most 128"
    cut, problem = tokenizer_model.encode(tokenizer, [long], settings, truncate=True)
    assert problem is None and cut["input_ids"].shape == (1, 128)


def manifest(profiles=("batch=1:4:8,seq=1:64:128",), plugin_layers=4) -> EngineManifest:
    environment = Environment("10.13.0", "12.9", "NVIDIA H200", "9.0", "ab" * 32)
    return EngineManifest(environment, "0" * 64, "1" * 64, [parse_profile(p) for p in profiles], "tiny.onnx",
                          CONFIG.to_dict(), plugin_layers)


def test_engine_configuration_from_the_manifest():
    outputs = [Tensor("last_hidden_state", "TYPE_FP32", (-1, 32)), Tensor("pooler_output", "TYPE_FP32", (32,))]
    text = engine_config(manifest(("batch=1:4:8,seq=1:64:128", "batch=1:16:32,seq=64:256:512")), "tiny",
                         outputs=outputs, instances=2)
    config = parse(text)
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 8  # what every profile takes
    assert list(config.instance_group[0].profile) == ["0", "1"] and config.instance_group[0].count == 2
    assert config.instance_group[0].kind == 1  # KIND_GPU
    assert [list(i.dims) for i in config.input] == [[-1], [-1]]
    for needed in ("TensorRT 10.13.0", "NVIDIA H200", "compute capability 9.0", "4 seo plugin layers",
                   "profile 1: batch 1..32 (opt 16), seq 64..512 (opt 256)", "sequences outside 1..512"):
        assert needed in text, needed
    auto = parse(engine_config(manifest(), "tiny", max_batch_size=4))
    assert auto.max_batch_size == 4 and len(auto.output) == 0  # outputs left to Triton's auto-complete
    with pytest.raises(Exception, match="over what the engine's profiles accept"):
        engine_config(manifest(), "tiny", max_batch_size=9)
    assert "single-row requests fail" in engine_config(manifest(("batch=2:4:8,seq=1:64:128",)), "tiny")


def test_an_engine_repository_copies_the_plan_and_finds_the_outputs_beside_it(tmp_path, capsys):
    tiny_onnx(tmp_path / "tiny.onnx", CONFIG)
    engine = tmp_path / "tiny.engine"
    engine.write_bytes(b"not really a plan")
    m = manifest()
    m = EngineManifest(m.environment, sha256_file(tmp_path / "tiny.onnx"), sha256_file(engine), m.profiles,
                       "tiny.onnx", CONFIG.to_dict(), 4)
    write_manifest(m, engine)
    assert main(["triton-repo", str(engine), "-o", str(tmp_path / "repo"), "--name", "plan"]) == 0
    config = parse((tmp_path / "repo" / "plan" / "config.pbtxt").read_text())
    assert config.platform == "tensorrt_plan" and [o.name for o in config.output] == ["last_hidden_state",
                                                                                      "pooler_output"]
    assert (tmp_path / "repo" / "plan" / "1" / "model.plan").read_bytes() == b"not really a plan"
    assert "not been checked" in (tmp_path / "repo" / "plan" / "README.md").read_text()
    from seo_export.serve.server import check_repository

    with pytest.raises(Exception, match="tensorrt_plan, which the bundled Triton server"):
        check_repository(tmp_path / "repo")
    engine.write_bytes(b"changed")
    assert main(["triton-repo", str(engine), "-o", str(tmp_path / "repo2")]) == 2
    assert "does not match its manifest" in capsys.readouterr().err


def test_python_config_parameters_and_ensemble_parse():
    outputs = [Tensor("logits", "TYPE_FP16", (3,))]
    config = parse(python_config("m", outputs, 8, 2, 500, max_sequence_length=64))
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.parameters["max_sequence_length"].string_value == "64"
    assert config.output[0].data_type == 10  # TYPE_FP16
    ensemble = parse(ensemble_config("m_text", "m", "m_tokenizer", outputs, 8))
    assert ensemble.ensemble_scheduling.step[1].model_name == "m"


def one_error(capsys, *fragments):
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("seo-export triton-repo: error: "), err
    for fragment in fragments:
        assert fragment in err[0], err[0]


def test_refusals_are_one_line_and_leave_the_repository_as_it_was(files, tmp_path, capsys):
    repo = tmp_path / "repo"
    onnx = str(files["onnx"])
    assert main(["triton-repo", onnx, "-o", str(repo)]) == 0
    before = sorted(str(p.relative_to(repo)) for p in repo.rglob("*"))
    capsys.readouterr()
    for args, fragments in [
        ([onnx], ("exists; pass --overwrite",)),
        ([onnx, "--name", "bad name"], ("not a usable Triton model name",)),
        ([onnx, "--name", "t2", "--tokenizer", str(tmp_path)], ("has no tokenizer.json",)),
        ([onnx, "--name", "t3", "--max-seq-len", "500"], ("over the model's own limit",)),
        ([str(tmp_path / "missing.onnx")], ("does not exist",)),
        ([onnx, "--name", "t4", "--truncate"], ("add --tokenizer",)),
    ]:
        assert main(["triton-repo", *args, "-o", str(repo)]) == 2, args
        one_error(capsys, *fragments)
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*")) == before  # nothing half-written, no staging
    small = tmp_path / "small.onnx"
    tiny_onnx(small, CONFIG.replace(vocab_size=20))
    assert main(["triton-repo", str(small), "-o", str(repo), "--tokenizer", str(files["tokenizer"])]) == 2
    one_error(capsys, "vocab_size is 20")
    assert main(["triton-repo", onnx, "-o", str(repo), "--overwrite", "--instances", "2"]) == 0
    assert "count: 2" in (repo / NAME / "configs" / "python.pbtxt").read_text()


def test_serve_refusals_come_before_any_server_starts(files, tmp_path, capsys):
    def one_serve_error(*fragments):
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith("seo-export serve: error: "), err
        for fragment in fragments:
            assert fragment in err[0], err[0]

    assert main(["serve"]) == 2
    one_serve_error("give a model repository")
    assert main(["serve", str(tmp_path / "nowhere")]) == 2
    one_serve_error("does not exist")
    (tmp_path / "empty").mkdir()
    assert main(["serve", str(tmp_path / "empty")]) == 2
    one_serve_error("holds no model")
    assert main(["serve", str(files["repo"]), "--http-port", "9000", "--grpc-port", "9000"]) == 2
    one_serve_error("the three ports must differ")


def test_the_server_environment_puts_the_interpreters_libdir_and_the_venv_first(tmp_path):
    import sysconfig

    from seo_export.serve.runtime import Runtime
    from seo_export.serve.server import ServerOptions, TritonServer

    runtime = Runtime(root=tmp_path, python_bin=tmp_path / "bin", package=tmp_path / "pytriton",
                      libs=tmp_path / "nvidia_pytriton.libs", backends=tmp_path / "backends", numpy_version="1.26.4")
    env = runtime.environment({"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/lib", "PYTHONHOME": "/x"})
    assert env["LD_LIBRARY_PATH"].split(":") == [sysconfig.get_config_var("LIBDIR"), str(runtime.libs), "/opt/lib"]
    assert env["PATH"].split(":")[0] == str(tmp_path / "bin") and "PYTHONHOME" not in env
    command = TritonServer(runtime, tmp_path, ServerOptions(http_port=1, grpc_port=2, metrics_port=3)).command()
    for flag in (f"--model-repository={tmp_path.resolve()}", f"--backend-directory={tmp_path / 'backends'}",
                 "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1",
                 "--http-port=1", "--model-config-name=python", "--exit-timeout-secs=5"):
        assert flag in command, flag
    assert any(f.startswith("--backend-config=python,shm-region-prefix-name=seoexport_") for f in command)
