"""A tiny WordPiece tokenizer trained here (no downloads), saved as a checkpoint's tokenizer files."""

from __future__ import annotations

import json
from pathlib import Path

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD, UNK, CLS, SEP = 0, 1, 2, 3  # the trainer gives special tokens the first ids, in order

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "SEO content analysis scores the quality of every page.",
    "Internal linking uses embeddings to cluster related articles.",
    "Search engines rank pages by relevance and authority.",
    "A page title should describe the content of the page.",
    "Meta descriptions summarise a page for the search results.",
    "Duplicate content confuses crawlers and splits ranking signals.",
    "Canonical links tell crawlers which version of a page counts.",
    "Long articles are split into sections with clear headings.",
    "Keyword stuffing lowers the quality score of a page.",
    "Anchor text should say where a link goes.",
    "Broken links waste the crawl budget of a site.",
    "Page speed matters for users on slow mobile networks.",
    "Structured data helps search engines understand products.",
    "Thin content pages rarely rank for competitive queries.",
    "Clustering groups articles about the same topic together.",
    "Café owners write reviews in French: très bien, déjà vu.",
    "Über die Qualität der Inhalte entscheiden die Leser.",
    "Embeddings map each text to a vector of numbers.",
    "A classifier predicts the category of a page from its text.",
    "Sitemaps list the pages a site wants crawled.",
    "Images need alt text for accessibility and search.",
    "Redirect chains slow crawlers down and leak authority.",
    "Fresh content is crawled more often than stale pages.",
    "Each language version of a page links to the others.",
    "Readers leave pages that load slowly or read badly.",
    "The model reads tokens, not words or characters.",
    "Transformers attend to every token in the sequence.",
    "Local attention looks only at nearby tokens in a window.",
    "Landmark attention summarises segments of the sequence.",
]


def train_tokenizer(directory: Path, model_max_length: int | None = 512, vocab_size: int = 300,
                    side_files: bool = True):
    """Train and save ``directory/tokenizer.json`` (+ tokenizer_config.json with the pad token and
    ``model_max_length``, and special_tokens_map.json); returns the tokenizers.Tokenizer."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(SENTENCES, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS))
    assert [tokenizer.token_to_id(t) for t in SPECIALS[:4]] == [PAD, UNK, CLS, SEP]
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", CLS), ("[SEP]", SEP)])
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    if side_files:
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "[PAD]", "unk_token": "[UNK]",
                  "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}
        if model_max_length is not None:
            config["model_max_length"] = model_max_length
        (directory / "tokenizer_config.json").write_text(json.dumps(config))
        (directory / "special_tokens_map.json").write_text(json.dumps(
            {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]"}))
    return tokenizer
