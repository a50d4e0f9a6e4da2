"""seo_export.text.tokenize against transformers' own tokenization, and every refusal."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from seo_export.errors import MissingDependencyError, UsageError
from seo_export.models import TransformerConfig
from seo_export.text import encode, load_tokenizer, model_limit, tightest
from tests.text.helpers import CLS, PAD, SEP, train_tokenizer

TEXTS = [
    "Search engines rank pages.",
    "Café über naïve 日本語 text — with emoji 🚀 and accents: déjà vu, Qualität.",
    "ok",
    "Internal linking uses embeddings to cluster related articles about the quality of content on every page, "
    "and long articles are split into sections with clear headings so readers and crawlers find their way.",
]


def transformers_batch(directory, texts, padding_side=None, **kwargs) -> dict[str, np.ndarray]:
    """transformers' tokenization of ``texts``, as numpy int64, loaded both ways users load it."""
    transformers = pytest.importorskip("transformers")
    auto = transformers.AutoTokenizer.from_pretrained(str(directory))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"), pad_token="[PAD]")
    results = []
    for tokenizer in (auto, fast):
        if padding_side is not None:
            tokenizer.padding_side = padding_side
        batch = tokenizer(list(texts), padding=True, return_tensors="np", **kwargs)
        results.append({k: np.asarray(batch[k], dtype=np.int64) for k in ("input_ids", "attention_mask")})
    for name in results[0]:
        np.testing.assert_array_equal(results[0][name], results[1][name])
    return results[0]


def assert_same(ours: dict, theirs: dict) -> None:
    assert set(ours) == {"input_ids", "attention_mask"}
    for name in ours:
        assert ours[name].dtype == np.int64
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)


def test_a_batch_matches_transformers_padding(tokenizer_dir):
    tok = load_tokenizer(tokenizer_dir)
    ours = encode(tok, TEXTS, tok.limit)
    assert_same(ours, transformers_batch(tokenizer_dir, TEXTS))
    lengths = ours["attention_mask"].sum(axis=1)
    assert len(set(lengths)) == len(TEXTS)  # the batch really needs padding, row by row
    for row, n in enumerate(lengths):  # right padding, [CLS] first and [SEP] last of the real tokens
        assert ours["attention_mask"][row].tolist() == [1] * n + [0] * (ours["input_ids"].shape[1] - n)
        assert ours["input_ids"][row, 0] == CLS and ours["input_ids"][row, n - 1] == SEP
        assert (ours["input_ids"][row, n:] == PAD).all()


def test_truncation_matches_transformers_and_keeps_the_special_tokens(tokenizer_dir):
    tok = load_tokenizer(tokenizer_dir)
    notices = []
    ours = encode(tok, TEXTS, (12, "the model takes at most 12"), truncate=True, notice=notices.append)
    assert_same(ours, transformers_batch(tokenizer_dir, TEXTS, truncation=True, max_length=12))
    assert ours["input_ids"].shape == (4, 12)
    full = [len(e.ids) for e in tok.tokenizer.encode_batch(TEXTS)]
    cut = [i for i, n in enumerate(full) if n > 12]
    assert cut == [1, 3]  # two texts need cutting, the others are padded
    assert notices == [f"text {i + 1}: {full[i]} tokens truncated to 12 (the model takes at most 12)" for i in cut]
    assert (ours["input_ids"][cut, 0] == CLS).all() and (ours["input_ids"][cut, -1] == SEP).all()


def test_too_long_text_is_refused_without_truncate(tokenizer_dir):
    tok = load_tokenizer(tokenizer_dir)
    n = len(tok.tokenizer.encode(TEXTS[3]).ids)
    with pytest.raises(UsageError) as error:
        encode(tok, TEXTS, (20, "the model takes at most 20"))
    assert str(error.value) == f"text 2 has {len(tok.tokenizer.encode(TEXTS[1]).ids)} tokens; the model takes at " \
                               "most 20; pass --truncate to cut it"
    assert n > 20
    ok = encode(tok, TEXTS[:1], (20, "the model takes at most 20"))  # short texts pass the same limit
    assert ok["input_ids"].shape[0] == 1


def test_padding_and_truncation_stored_in_tokenizer_json_are_ignored(tmp_path):
    """transformers resets the stored length and truncation per call; a fixed length or a cut in the file
    must not leak in. It keeps a stored left padding side, which the zoo cannot take (it counts positions
    from the left): the texts are padded on the right all the same."""
    tokenizer = train_tokenizer(tmp_path)
    tokenizer.enable_padding(direction="left", pad_id=PAD, pad_token="[PAD]", length=40)
    tokenizer.enable_truncation(max_length=6)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    tok = load_tokenizer(tmp_path)
    ours = encode(tok, TEXTS[:3], tok.limit)
    assert_same(ours, transformers_batch(tmp_path, TEXTS[:3], padding_side="right"))
    left = transformers_batch(tmp_path, TEXTS[:3])
    assert left["attention_mask"][0, 0] == 0 and ours["attention_mask"][0, 0] == 1  # the file did say left
    assert ours["input_ids"].shape[1] == max(len(tok.tokenizer.encode(t).ids) for t in TEXTS[:3]) > 6


def test_pad_token_comes_from_the_side_files(tmp_path):
    train_tokenizer(tmp_path, side_files=False)
    tok = load_tokenizer(tmp_path)
    assert tok.pad_id is None and tok.model_max_length is None
    with pytest.raises(UsageError, match="names no pad token"):
        encode(tok, TEXTS[:2])
    assert encode(tok, TEXTS[:2], pad_id=7)["input_ids"][0, -1] == 7  # the model's pad_token_id, when given
    assert encode(tok, ["same", "same"])["attention_mask"].all()  # no padding needed, no pad token needed
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"pad_token": {"content": "[MASK]"}}))
    tok = load_tokenizer(tmp_path)
    assert tok.pad_token == "[MASK]" and tok.pad_id == tok.tokenizer.token_to_id("[MASK]") != PAD
    assert encode(tok, TEXTS[:2], pad_id=7)["input_ids"][0, -1] == tok.pad_id  # the tokenizer's own pad token wins


def test_model_max_length_sentinels_are_no_limit(tmp_path):
    train_tokenizer(tmp_path, model_max_length=int(1e30))
    assert load_tokenizer(tmp_path).limit is None
    train_tokenizer(tmp_path, model_max_length=16)
    assert load_tokenizer(tmp_path).limit == (16, "the tokenizer's model_max_length is 16")


def test_the_limit_is_the_tightest_and_a_tie_names_the_model():
    learned = TransformerConfig(positional_encoding_type="learned", positional_encoding_max_len=512)
    assert model_limit(learned) == (512, "the model takes at most 512")
    assert model_limit(learned.to_dict()) == (512, "the model takes at most 512")  # ONNX metadata is a dict
    assert model_limit(TransformerConfig(positional_encoding_type="rotary")) is None
    assert model_limit(None) is None
    tokenizer = (512, "the tokenizer's model_max_length is 512")
    assert tightest([model_limit(learned), tokenizer, None]) == (512, "the model takes at most 512")
    assert tightest([model_limit(learned), tokenizer, (64, "--max-length is 64")]) == (64, "--max-length is 64")
    assert tightest([None, None]) is None


def test_ids_past_the_models_vocabulary_name_both_sizes(tokenizer_dir):
    tok = load_tokenizer(tokenizer_dir)
    ids = encode(tok, TEXTS)["input_ids"]
    with pytest.raises(UsageError) as error:
        encode(tok, TEXTS, vocab_size=int(ids.max()))
    assert f"has {tok.vocab_size} tokens but the model's vocab_size is {int(ids.max())}" in str(error.value)
    assert encode(tok, TEXTS, vocab_size=int(ids.max()) + 1)["input_ids"].max() == ids.max()


@pytest.mark.parametrize("texts,fragment", [
    ([], "no text to tokenize"),
    (["fine", ""], "text 2 is empty"),
    (["  \t "], "text 1 is empty"),
])
def test_empty_text_is_refused(tokenizer_dir, texts, fragment):
    with pytest.raises(UsageError, match=fragment):
        encode(load_tokenizer(tokenizer_dir), texts)


def test_a_limit_with_no_room_for_text(tokenizer_dir):
    with pytest.raises(UsageError, match="leaves no room for text besides the 2 special tokens"):
        encode(load_tokenizer(tokenizer_dir), TEXTS, (2, "--max-length is 2"), truncate=True)


def test_bad_tokenizer_folders(tmp_path, tokenizer_dir):
    with pytest.raises(UsageError, match="does not exist"):
        load_tokenizer(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="has no tokenizer.json"):
        load_tokenizer(tmp_path)
    shutil.copytree(tokenizer_dir, tmp_path / "bad")
    (tmp_path / "bad" / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nope"}}')
    with pytest.raises(UsageError, match="is not a tokenizer file the tokenizers library can read"):
        load_tokenizer(tmp_path / "bad")
    shutil.copy(tokenizer_dir / "tokenizer.json", tmp_path / "bad" / "tokenizer.json")
    (tmp_path / "bad" / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(UsageError, match="cannot read .*tokenizer_config.json"):
        load_tokenizer(tmp_path / "bad")
    (tmp_path / "bad" / "tokenizer_config.json").write_text(json.dumps({"pad_token": "<pad>"}))
    with pytest.raises(UsageError, match="pad token '<pad>' .* is not in the vocabulary"):
        load_tokenizer(tmp_path / "bad")
    assert load_tokenizer(tokenizer_dir / "tokenizer.json").pad_id == PAD  # the file itself, side files beside it


def test_missing_tokenizers_library_is_a_dependency_error(tokenizer_dir, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tokenizers(name, *args, **kwargs):
        if name == "tokenizers":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tokenizers)
    with pytest.raises(MissingDependencyError, match=r'seo-export\[hf\]'):
        load_tokenizer(tokenizer_dir)
