"""TensorRT plugin ``seo::LandmarkAttention`` (version 1): Nystrom attention by the Triton kernels.

- register: five inputs (q, k, v, key_mask, rel_bias), int32 attributes num_landmarks and
  pinv_iterations, float32 scale (one-element arrays, ``rules.INT_ATTRIBUTE``); the output is like q.
  Registered as ``seo::LandmarkAttention`` and ``seo::LandmarkAttention_zero_bias`` (``rules.plugin_names``).
- autotune: q, k, v, rel_bias and the output all FP16 or all FP32, key_mask BOOL, LINEAR.
- aot_impl: the single kernel ``landmark_fwd`` (one program per (batch, head)) compiled to PTX
  for the build GPU (attributes, the head dim and the bias width K are compile-time
  constants), launched by TensorRT without Python. Up to 32 landmarks: more cannot fit the
  48 KiB of shared memory TensorRT gives a kernel, and aot_impl refuses them (set aot=0).
- impl: the JIT path, launching the four parallel kernels of ``seo_plugins.kernels.landmark``
  through Triton on TensorRT's stream (the fast path on a GPU; any landmark count).

The checks and launch arithmetic are in ``seo_plugins.trt.rules``. (No ``from __future__
import annotations`` here: ``tensorrt.plugin`` reads the annotations as classes.)
"""

import os
from typing import List, Tuple, Union

from seo_plugins.trt import rules

PLUGIN = rules.LANDMARK


def launch_into(out, q, k, v, key_mask, rel_bias, num_landmarks: int, pinv_iterations: int, scale: float):
    """Run the landmark kernel on torch tensors (CUDA, or CPU under TRITON_INTERPRET=1) into ``out``.

    q, k, v [B, H, S, D]; key_mask [B, S] (bool or int8, nonzero = real token); rel_bias
    [H, 2K+1]; ``out`` a contiguous tensor like q.
    """
    import torch

    from seo_plugins.kernels.landmark import run_landmark

    attrs = rules.check_landmark_attributes(num_landmarks, pinv_iterations, scale)
    max_distance = rules.bias_max_distance(rel_bias.shape[-1])
    mask = key_mask if key_mask.dtype == torch.int8 else key_mask.to(torch.int8)
    q, k, v, mask, rel_bias = (t.contiguous() for t in (q, k, v, mask, rel_bias))
    if not out.is_contiguous():
        raise ValueError("the output tensor must be contiguous")
    return run_landmark(out, q, k, v, mask, rel_bias, attrs["num_landmarks"], attrs["pinv_iterations"], max_distance,
                        attrs["scale"])


def register(trtp) -> bool:
    """Register the plugin with ``tensorrt.plugin`` under each of its names (``rules.plugin_names``: one
    per overload a five-input node can carry); False when all already are (idempotent)."""
    return rules.register_each(trtp, PLUGIN, lambda plugin_id: _define(trtp, plugin_id))


def _define(trtp, plugin_id: str) -> None:
    # Attributes are annotated as NumPy arrays (rules.INT_ATTRIBUTE): TensorRT's int()/float() of the
    # one-element arrays onnx-tensorrt passes fails under NumPy >= 2.4; rules.attribute_scalars converts.
    @trtp.register(plugin_id)
    def describe(
        q: trtp.TensorDesc, k: trtp.TensorDesc, v: trtp.TensorDesc, key_mask: trtp.TensorDesc,
        rel_bias: trtp.TensorDesc, num_landmarks: rules.INT_ATTRIBUTE, pinv_iterations: rules.INT_ATTRIBUTE,
        scale: rules.FLOAT_ATTRIBUTE,
    ) -> trtp.TensorDesc:
        attrs = rules.attribute_scalars(PLUGIN, (num_landmarks, pinv_iterations, scale))
        return rules.describe_output(PLUGIN, (q, k, v, key_mask, rel_bias), attrs)

    @trtp.autotune(plugin_id)
    def autotune(
        q: trtp.TensorDesc, k: trtp.TensorDesc, v: trtp.TensorDesc, key_mask: trtp.TensorDesc,
        rel_bias: trtp.TensorDesc, outputs: Tuple[trtp.TensorDesc],
    ) -> List[trtp.AutoTuneCombination]:
        return [trtp.AutoTuneCombination(rules.AUTOTUNE_TYPES, rules.AUTOTUNE_LAYOUTS)]

    @trtp.aot_impl(plugin_id)
    def aot_impl(
        q: trtp.TensorDesc, k: trtp.TensorDesc, v: trtp.TensorDesc, key_mask: trtp.TensorDesc,
        rel_bias: trtp.TensorDesc, num_landmarks: rules.INT_ATTRIBUTE, pinv_iterations: rules.INT_ATTRIBUTE,
        scale: rules.FLOAT_ATTRIBUTE, outputs: Tuple[trtp.TensorDesc], tactic: int,
    ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymIntExprs]:
        attrs = rules.attribute_scalars(PLUGIN, (num_landmarks, pinv_iterations, scale))
        return rules.aot_impl_result(trtp, PLUGIN, (q, k, v, key_mask, rel_bias), attrs, rules.current_arch(),
                                     os.environ.get(rules.KERNEL_DIR_ENV) or None)

    @trtp.impl(plugin_id)
    def impl(
        q: trtp.Tensor, k: trtp.Tensor, v: trtp.Tensor, key_mask: trtp.Tensor, rel_bias: trtp.Tensor,
        num_landmarks: rules.INT_ATTRIBUTE, pinv_iterations: rules.INT_ATTRIBUTE, scale: rules.FLOAT_ATTRIBUTE,
        outputs: Tuple[trtp.Tensor], stream: int,
    ) -> None:
        attrs = rules.attribute_scalars(PLUGIN, (num_landmarks, pinv_iterations, scale))
        rules.run_jit(stream, (q, k, v, key_mask, rel_bias), outputs[0],
                      lambda out, *inputs: launch_into(out, *inputs, *attrs.values()))
