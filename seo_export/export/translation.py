"""torch.ops.seo.* -> one ``seo::`` ONNX node each, with the attributes TensorRT's parser reads.

Every node gets all five inputs: an absent key mask becomes all-true and an absent
bias a zero [H, 1] table, so each node matches the fixed five-input TensorRT
plugin. (The function library still covers nodes with absent optional inputs.)
"""

from __future__ import annotations

import onnxscript
from onnx.defs import OpSchema
from onnxscript import opset18 as op
from onnxscript.values import Op, Opset

from seo_export.export.functions import DOMAIN, LANDMARK, LOCAL_WINDOW, OP_VERSION

PLUGIN_ATTRIBUTES = {"plugin_namespace": DOMAIN, "plugin_version": str(OP_VERSION)}
OP_ATTRIBUTES = {
    LOCAL_WINDOW: (("window_left", OpSchema.AttrType.INT), ("window_right", OpSchema.AttrType.INT)),
    LANDMARK: (("num_landmarks", OpSchema.AttrType.INT), ("pinv_iterations", OpSchema.AttrType.INT)),
}


def _schema(op_type: str) -> OpSchema:
    """An unregistered schema: onnxscript needs one to emit the node; registering it globally
    would make the checker use it instead of the model-local function."""
    param, optional = OpSchema.FormalParameter, OpSchema.FormalParameterOption.Optional
    floats = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"]
    attrs = [*OP_ATTRIBUTES[op_type], ("scale", OpSchema.AttrType.FLOAT),
             ("plugin_namespace", OpSchema.AttrType.STRING), ("plugin_version", OpSchema.AttrType.STRING)]
    return OpSchema(
        op_type, DOMAIN, OP_VERSION,
        inputs=[param("q", "T"), param("k", "T"), param("v", "T"),
                param("key_mask", "M", param_option=optional), param("rel_bias", "T", param_option=optional)],
        outputs=[param("out", "T")],
        type_constraints=[("T", floats, ""), ("M", ["tensor(bool)"], "")],
        attributes=[OpSchema.Attribute(name, kind, "", required=True) for name, kind in attrs],
    )


_SEO = Opset(DOMAIN, OP_VERSION)
_OPS = {name: Op(_SEO, name, _schema(name)) for name in (LOCAL_WINDOW, LANDMARK)}


def _full_inputs(q, key_mask, rel_bias):
    """Materialise absent optional inputs: mask of ones [B, S], zero bias [H, 1]."""
    if key_mask is None:
        batch_seq = op.Concat(op.Shape(q, start=0, end=1), op.Shape(q, start=2, end=3), axis=0)
        key_mask = op.Not(op.Cast(op.ConstantOfShape(batch_seq), to=onnxscript.ir.DataType.BOOL))
    if rel_bias is None:
        heads_one = op.Concat(op.Shape(q, start=1, end=2), op.Constant(value_ints=[1]), axis=0)
        rel_bias = op.CastLike(op.ConstantOfShape(heads_one), q)
    return key_mask, rel_bias


def local_window_translation(q, k, v, window_left: int, window_right: int, key_padding_mask, rel_bias,
                             scale: float):
    key_mask, rel_bias = _full_inputs(q, key_padding_mask, rel_bias)
    return _OPS[LOCAL_WINDOW](q, k, v, key_mask, rel_bias, window_left=int(window_left),
                              window_right=int(window_right), scale=float(scale), **PLUGIN_ATTRIBUTES)


def landmark_translation(q, k, v, num_landmarks: int, pinv_iterations: int, key_padding_mask, rel_bias,
                         scale: float):
    key_mask, rel_bias = _full_inputs(q, key_padding_mask, rel_bias)
    return _OPS[LANDMARK](q, k, v, key_mask, rel_bias, num_landmarks=int(num_landmarks),
                          pinv_iterations=int(pinv_iterations), scale=float(scale), **PLUGIN_ATTRIBUTES)


def translation_table() -> dict:
    import torch

    from seo_export.ops import library  # registers torch.ops.seo.*

    assert library.local_window_attention_op is not None

    return {
        torch.ops.seo.local_window_attention.default: local_window_translation,
        torch.ops.seo.landmark_attention.default: landmark_translation,
    }
