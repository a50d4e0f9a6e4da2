"""Where `seo-export run` saves inputs and outputs: .npz, or .json in Polygraphy's formats, so
``polygraphy run MODEL --onnxrt --load-inputs IN.json --load-outputs OUT.json`` compares its own run
against seo-export's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seo_export.cli.common import require
from seo_export.utils.files import atomic_path

SUFFIXES = (".npz", ".json")


def _polygraphy(module: str):
    from seo_export.export.toolchain import INSTALL_HINT, require_module

    return require_module(module, f"saving .json for Polygraphy needs polygraphy ({INSTALL_HINT}); or save .npz")


def check_path(path: Path, flag: str) -> None:
    """Refuse a bad destination before anything runs."""
    require(path.parent.is_dir(), f"{flag}: folder {path.parent} does not exist")
    require(path.suffix in SUFFIXES, f"{flag} {path}: give a .npz file, or .json for Polygraphy")
    if path.suffix == ".json":
        _polygraphy("polygraphy.json")


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
        np.savez(f, **arrays)


def save_inputs(path: Path, feeds: dict[str, np.ndarray]) -> None:
    """.json: the list of feed dicts that ``polygraphy run --load-inputs`` reads."""
    if path.suffix != ".json":
        return save_arrays(path, feeds)
    with atomic_path(path) as tmp:
        _polygraphy("polygraphy.json").save_json([feeds], str(tmp))


def save_outputs(path: Path, outputs: dict[str, np.ndarray], runner_name: str) -> None:
    """.json: a Polygraphy RunResults of one iteration by ``runner_name`` (``--load-outputs``)."""
    if path.suffix != ".json":
        return save_arrays(path, outputs)
    comparator = _polygraphy("polygraphy.comparator")
    results = comparator.RunResults()
    results.append((runner_name, [comparator.IterationResult(outputs, runner_name=runner_name)]))
    logger = _polygraphy("polygraphy.logger").G_LOGGER
    with atomic_path(path) as tmp, logger.verbosity(logger.WARNING):  # not its "Saving ... to TMP" line
        results.save(str(tmp))
