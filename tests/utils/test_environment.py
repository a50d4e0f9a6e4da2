"""Machine facts for reports and ``seo-export info``: versions come from metadata, not imports."""

import builtins
import importlib
from importlib import metadata

import numpy as np
import pytest

from seo_export.parity.report.schema import ENVIRONMENT
from seo_export.utils import environment

OPTIONAL = ("triton", "tensorrt", "onnxruntime")


def test_collect_environment_has_the_schema_fields():
    env = environment.collect_environment(threads={"ort_intra_op": 2})
    assert set(ENVIRONMENT) <= set(env)
    assert env["threads"]["ort_intra_op"] == 2 and env["packages"]["numpy"] == np.__version__


def test_environment_records_the_allocator_settings(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1073741824")
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")
    monkeypatch.setenv("MALLOCATOR", "not an allocator setting")
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    allocator = environment.collect_environment()["allocator"]
    assert allocator["env"]["MALLOC_MMAP_THRESHOLD_"] == "1073741824"
    assert allocator["env"]["LD_PRELOAD"] == "/usr/lib/libjemalloc.so.2"
    assert "MALLOCATOR" not in allocator["env"]


def test_package_versions_are_read_without_importing_the_packages(monkeypatch):
    def refuse(import_):
        def guarded(name, *args, **kwargs):
            if name.split(".")[0] in OPTIONAL:
                pytest.fail(f"reading a version imported {name}")
            return import_(name, *args, **kwargs)
        return guarded

    monkeypatch.setattr(builtins, "__import__", refuse(builtins.__import__))
    monkeypatch.setattr(importlib, "import_module", refuse(importlib.import_module))
    versions = {name: environment.package_version(name) for name in OPTIONAL}
    assert versions["onnxruntime"] == metadata.version("onnxruntime")


def test_package_version_finds_distributions_named_unlike_their_module(monkeypatch):
    # e.g. the onnxruntime module installed by onnxruntime-gpu
    monkeypatch.setattr(environment, "_distributions_by_module", lambda: {"renamed_numpy": ["numpy"]})
    assert environment.package_version("renamed_numpy") == np.__version__
    assert environment.package_version("no_such_package") is None
