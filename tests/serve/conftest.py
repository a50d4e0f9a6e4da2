"""A tiny exported model, its Triton repository (with the text entry point) and one real server per module.

The server tests need the serve extra (the tritonclient library: `pip install -e ".[serve]"`, part of
`.[test]`) and skip without it. The server binary comes from the serving environment
(seo_export/serve/runtime.py), created on first use from PyPI (nvidia-pytriton 0.7.0 and numpy 1.26 in a
venv under ~/.cache/seo-export/serve, or $SEO_EXPORT_SERVE_ENV): a failure there fails the tests.
"""

from __future__ import annotations

import pytest

from tests.export.helpers import small_config
from tests.text.helpers import train_tokenizer

#: Local attention and learned positions: a `seo::` node, and a model limit (128 tokens) to exceed.
CONFIG = small_config("local", "learned").replace(vocab_size=300)
NAME = "tiny"


def need_serve_extra():
    pytest.importorskip("tritonclient.http", reason='the serve extra is missing: pip install -e ".[serve]"')
    pytest.importorskip("tritonclient.grpc", reason='the serve extra is missing: pip install -e ".[serve]"')


@pytest.fixture(scope="session")
def runtime():
    need_serve_extra()
    from seo_export.serve.runtime import ensure_runtime

    return ensure_runtime()


@pytest.fixture(scope="session")
def files(tmp_path_factory):
    """tiny.onnx (exported from the zoo), a tokenizer checkpoint folder and the repository written from both."""
    from seo_export.export import export_onnx
    from seo_export.models.build import build_model
    from seo_export.serve.repository import write_repository

    root = tmp_path_factory.mktemp("serve")
    export_onnx(build_model(CONFIG, seed=0, init="peaked"), root / f"{NAME}.onnx")
    train_tokenizer(root / "checkpoint")
    write_repository(root / f"{NAME}.onnx", root / "repo", tokenizer=root / "checkpoint", max_batch_size=16)
    return {"root": root, "onnx": root / f"{NAME}.onnx", "tokenizer": root / "checkpoint", "repo": root / "repo"}


@pytest.fixture(scope="module")
def server(runtime, files, request):
    """One server over the repository on free 127.0.0.1 ports; stopped (and checked gone) after the module."""
    from seo_export.serve.server import ServerOptions, TritonServer, free_port

    last = None
    for _ in range(3):  # a free port can be taken between the probe and the server's bind
        options = ServerOptions(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                                exit_timeout_s=3)
        server = TritonServer(runtime, files["repo"], options, log_path=files["root"] / "server.log")
        try:
            server.start(ready_timeout_s=90)
            break
        except Exception as exc:
            last = exc
            if "bind" not in files["root"].joinpath("server.log").read_text(errors="replace").lower():
                raise
    else:
        raise last

    def stop():
        server.stop()
        assert server.group_members() == [] and server.shm_regions() == []

    request.addfinalizer(stop)
    return server
