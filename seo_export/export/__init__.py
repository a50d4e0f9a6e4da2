"""Stage 1: PyTorch model -> ONNX with seo:: custom nodes, portable function bodies and an FP16 graph."""

from seo_export.export.exporter import ExportResult, build_onnx, export_onnx, op_counts

__all__ = ["ExportResult", "build_onnx", "export_onnx", "op_counts"]
