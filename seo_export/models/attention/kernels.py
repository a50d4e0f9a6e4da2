"""Which implementation the local and landmark attention modules give the ``seo`` ops.

The reference is the default, and the only one while a model is traced (torch.export, torch.compile,
torch.jit), so an export still emits the ``seo::`` custom ops. ``with ops_backend("triton"):`` runs
the Triton kernels instead, for the calls made in that block (a context variable: per thread and
per asyncio task). Calls that need autograd keep the reference: the kernels have no backward.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch

from seo_export import ops

_BACKEND: contextvars.ContextVar[str] = contextvars.ContextVar("seo_ops_backend", default="reference")


@contextlib.contextmanager
def ops_backend(name: str) -> Iterator[None]:
    """Run the ``seo`` ops of LocalAttention and SparseAttention on ``name`` (one of ``ops.BACKENDS``) in the block."""
    if name not in ops.BACKENDS:
        raise ValueError(f"ops backend must be one of {', '.join(ops.BACKENDS)}, got {name!r}")
    token = _BACKEND.set(name)
    try:
        yield
    finally:
        _BACKEND.reset(token)


def current_ops_backend() -> str:
    return _BACKEND.get()


def backend_for(*tensors: torch.Tensor | None) -> str:
    """The backend of one call on ``tensors``: the chosen one, or the reference while tracing or recording gradients."""
    name = _BACKEND.get()
    if name == "reference" or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return "reference"
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return "reference"
    return name
