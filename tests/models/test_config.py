import json

import pytest

from seo_export import TransformerConfig
from seo_export.models import ConfigError


@pytest.mark.parametrize("changes,match", [
    ({"hidden_size": 100, "num_heads": 12}, "hidden_size .100. must be divisible by num_heads .12."),
    ({"hidden_size": 36, "num_heads": 4, "positional_encoding_type": "rotary"}, "even head dim"),
    ({"attention_window_size": 0}, "attention_window_size must be > 0"),
    ({"attention_num_landmarks": -1}, "attention_num_landmarks must be > 0"),
    ({"attention_max_relative_position": 0}, "attention_max_relative_position must be > 0"),
    ({"positional_encoding_max_relative_position": 0}, "positional_encoding_max_relative_position must be > 0"),
    ({"num_layers": 0}, "num_layers must be > 0"),
    ({"num_heads": 0}, "num_heads must be > 0"),
    ({"attention_type": "dense"}, "valid: standard, local, sparse, relative"),
    ({"positional_encoding_type": "alibi"}, "valid: sinusoidal, learned, relative, rotary"),
    ({"attention_type": "sparse", "use_causal_mask": True}, "not defined for attention_type 'sparse'"),
    ({"dropout_rate": 1.5}, r"dropout_rate must be in \[0, 1\)"),
    ({"hidden_size": "768"}, "hidden_size must be of type int"),
    ({"use_causal_mask": 1}, "use_causal_mask must be of type bool"),
    ({"hidden_act": "relu"}, "hidden_act 'relu' is unknown; valid: gelu, gelu_tanh"),
    ({"classifier_activation": "relu"}, "classifier_activation 'relu' is unknown; valid: pooler, tanh"),
    ({"num_labels": -1}, "num_labels must be >= 0"),
    ({"attention_value_conv_kernel": 4}, "odd kernel size, got 4"),
    ({"attention_value_conv_kernel": -3}, "odd kernel size, got -3"),
])
def test_invalid_values_are_rejected_with_the_field_named(changes, match):
    with pytest.raises(ConfigError, match=match):
        TransformerConfig(**changes)


def test_json_round_trip(tmp_path):
    config = TransformerConfig(hidden_size=64, num_heads=4, attention_type="local", use_causal_mask=True)
    path = tmp_path / "config.json"
    config.to_json(path)
    assert TransformerConfig.from_json(path) == config
    assert json.loads(path.read_text())["attention_type"] == "local"


def test_unknown_json_key_is_named(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"hidden_size": 64, "num_heads": 4, "windw": 3}))
    with pytest.raises(ConfigError, match="unknown config key 'windw'"):
        TransformerConfig.from_json(path)


@pytest.mark.parametrize("text,match", [("{not json", "not valid JSON"), ("[1, 2]", "must be a JSON object")])
def test_bad_json_files(tmp_path, text, match):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        TransformerConfig.from_json(path)


def test_defaults_match_the_documented_ones():
    c = TransformerConfig()
    assert (c.hidden_size, c.num_layers, c.num_heads, c.vocab_size, c.intermediate_size) == (768, 12, 12, 30522, 3072)
    assert (c.attention_window_size, c.attention_num_landmarks, c.attention_pinv_iterations) == (128, 64, 6)
    assert c.layer_norm_eps == 1e-12 and c.positional_encoding_max_len == 5000
