"""What converted checkpoints need, through the exporter: the tanh GELU, the value convolution and the
classification head, in every attention kind, as FP32 and FP16 files, with ``logits`` a graph output."""

import numpy as np
import pytest
import torch

from seo_export.export import export_onnx
from seo_export.models.build import build_model, weights_provenance
from tests.export.helpers import ATTENTIONS, LENGTHS, eager, padded_inputs, small_config
from tests.export.test_parity import run_ort

FEATURES = dict(hidden_act="gelu_tanh", attention_value_conv_kernel=5, num_labels=3, classifier_activation="gelu_tanh")


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    directory = tmp_path_factory.mktemp("task")
    cache = {}

    def get(attention, precision):
        if (attention, precision) not in cache:
            model = build_model(small_config(attention, "learned").replace(**FEATURES), init="peaked")
            result = export_onnx(model, directory / f"{attention}-{precision}.onnx", precision=precision,
                                 weights=weights_provenance(0, None, "peaked"))
            cache[attention, precision] = model, result
        return cache[attention, precision]

    return get


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_fp32_file_gives_eager_logits(exports, attention):
    model, result = exports(attention, "fp32")
    for seq in LENGTHS:
        feeds = padded_inputs(3, seq)
        got, want = run_ort(result.path, feeds), eager(model, feeds)
        assert sorted(got) == sorted(want) == ["last_hidden_state", "logits", "pooler_output"]
        for name in want:
            real = feeds["attention_mask"].astype(bool) if name == "last_hidden_state" else slice(None)
            assert np.isfinite(got[name]).all()
            assert np.abs(got[name][real] - want[name][real]).max() <= 1e-4, (name, seq)


@pytest.mark.parametrize("attention", ["sparse"])
def test_fp16_file_within_twice_eager_fp16_error(exports, attention):
    model, result = exports(attention, "fp16")
    feeds = padded_inputs(3, LENGTHS[-1])
    got, want, half = run_ort(result.path, feeds), eager(model, feeds), eager(model, feeds, torch.float16)
    for name in want:
        err = np.abs(got[name] - want[name]).max()
        assert err <= 2 * np.abs(half[name] - want[name]).max() + 1e-3, name


def test_validate_judges_logits_and_sees_a_broken_head(exports, tmp_path):
    """validate compares logits too: an export whose classifier is off fails on logits alone."""
    import onnx
    from onnx import numpy_helper

    from tests.cli.helpers import seo_export  # the CLI, as users run it

    _, result = exports("local", "fp32")
    ok = seo_export("validate", "--model", result.path, "--max-len", 20, "--no-locate",
                    "--report-dir", tmp_path / "ok")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    proto = onnx.load_model(str(result.path))
    weight = next(t for t in proto.graph.initializer if "classifier.out_proj.weight" in t.name)
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.1, weight.name))
    onnx.save_model(proto, str(tmp_path / "broken.onnx"))
    broken = seo_export("validate", "--model", tmp_path / "broken.onnx", "--max-len", 20, "--no-locate")
    assert broken.returncode == 1 and "logits" in broken.stderr.replace("\n", " "), broken.stdout + broken.stderr
