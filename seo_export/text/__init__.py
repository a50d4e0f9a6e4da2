"""Text in: a checkpoint's own fast tokenizer (``tokenizer.json``) turns texts into model inputs.

Above ``models`` (a model's length limit comes from its config), below everything that feeds models
(``parity``, ``bench``, ``cli``).
"""

from seo_export.text.sources import Texts, collect_texts, read_text_file
from seo_export.text.tokenize import TextTokenizer, encode, load_tokenizer, model_limit, tightest

__all__ = ["TextTokenizer", "Texts", "collect_texts", "encode", "load_tokenizer", "model_limit", "read_text_file",
           "tightest"]
