"""Backends that run a model: eager PyTorch, ONNX Runtime and TensorRT, behind one Runner contract."""

from seo_export.backends.base import Runner

__all__ = ["Runner"]
