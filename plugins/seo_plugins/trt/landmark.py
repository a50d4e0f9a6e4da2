"""TensorRT plugin ``seo::LandmarkAttention`` (version 1): Nystrom attention by the Triton kernel.

- register: five inputs (q, k, v, key_mask, rel_bias), int attributes num_landmarks and
  pinv_iterations, float scale; the output is like q.
- autotune: q, k, v, rel_bias and the output all FP16 or all FP32, key_mask BOOL, LINEAR.
- aot_impl: the kernel compiled to PTX for the build GPU (attributes, the head dim and the
  bias width K are compile-time constants), launched by TensorRT without Python.
- impl: the JIT fallback, launching the same kernel through Triton on TensorRT's stream.

The checks and launch arithmetic are in ``seo_plugins.trt.rules``. (No ``from __future__
import annotations`` here: ``tensorrt.plugin`` reads the annotations as classes.)
"""

import os
from typing import List, Tuple, Union

from seo_plugins.trt import rules

PLUGIN = rules.LANDMARK
PLUGIN_ID = f"{rules.NAMESPACE}::{PLUGIN}"


def launch_into(out, q, k, v, key_mask, rel_bias, num_landmarks: int, pinv_iterations: int, scale: float):
    """Run the landmark kernel on torch tensors (CUDA, or CPU under TRITON_INTERPRET=1) into ``out``.

    q, k, v [B, H, S, D]; key_mask [B, S] (bool or int8, nonzero = real token); rel_bias
    [H, 2K+1]; ``out`` a contiguous tensor like q.
    """
    import torch

    from seo_plugins.kernels import compile_options
    from seo_plugins.kernels.landmark import landmark_constants, landmark_fwd

    attrs = rules.check_landmark_attributes(num_landmarks, pinv_iterations, scale)
    batch, heads, seq, head_dim = q.shape
    max_distance = rules.bias_max_distance(rel_bias.shape[-1])
    mask = key_mask if key_mask.dtype == torch.int8 else key_mask.to(torch.int8)
    q, k, v, mask, rel_bias = (t.contiguous() for t in (q, k, v, mask, rel_bias))
    if not out.is_contiguous():
        raise ValueError("the output tensor must be contiguous")
    if out.numel() == 0:
        return out
    launch, constants = landmark_constants(
        head_dim, attrs["num_landmarks"], attrs["pinv_iterations"], max_distance, attrs["scale"], True, True
    )
    landmark_fwd[launch.grid(batch, heads, seq)](
        q, k, v, mask, rel_bias, heads, seq, out, **constants, **compile_options(launch)
    )
    return out


def register(trtp) -> bool:
    """Register the plugin with ``tensorrt.plugin``; False when it already is (idempotent)."""
    if rules.is_registered(trtp, PLUGIN):
        return False

    @trtp.register(PLUGIN_ID)
    def describe(
        q: trtp.TensorDesc, k: trtp.TensorDesc, v: trtp.TensorDesc, key_mask: trtp.TensorDesc,
        rel_bias: trtp.TensorDesc, num_landmarks: int, pinv_iterations: int, scale: float,
    ) -> trtp.TensorDesc:
        attrs = dict(num_landmarks=num_landmarks, pinv_iterations=pinv_iterations, scale=scale)
        return rules.describe_output(PLUGIN, (q, k, v, key_mask, rel_bias), attrs)

    @trtp.autotune(PLUGIN_ID)
    def autotune(
        q: trtp.TensorDesc, k: trtp.TensorDesc, v: trtp.TensorDesc, key_mask: trtp.TensorDesc,
        rel_bias: trtp.TensorDesc, outputs: Tuple[trtp.TensorDesc],
    ) -> List[trtp.AutoTuneCombination]:
        return [trtp.AutoTuneCombination(rules.AUTOTUNE_TYPES, rules.AUTOTUNE_LAYOUTS)]

    @trtp.aot_impl(PLUGIN_ID)
    def aot_impl(
        q: trtp.TensorDesc, k: trtp.TensorDesc, v: trtp.TensorDesc, key_mask: trtp.TensorDesc,
        rel_bias: trtp.TensorDesc, num_landmarks: int, pinv_iterations: int, scale: float,
        outputs: Tuple[trtp.TensorDesc], tactic: int,
    ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymIntExprs]:
        attrs = dict(num_landmarks=num_landmarks, pinv_iterations=pinv_iterations, scale=scale)
        return rules.aot_impl_result(trtp, PLUGIN, (q, k, v, key_mask, rel_bias), attrs, rules.current_arch(),
                                     os.environ.get(rules.KERNEL_DIR_ENV) or None)

    @trtp.impl(PLUGIN_ID)
    def impl(
        q: trtp.Tensor, k: trtp.Tensor, v: trtp.Tensor, key_mask: trtp.Tensor, rel_bias: trtp.Tensor,
        num_landmarks: int, pinv_iterations: int, scale: float, outputs: Tuple[trtp.Tensor], stream: int,
    ) -> None:
        rules.run_jit(stream, (q, k, v, key_mask, rel_bias), outputs[0],
                      lambda out, *inputs: launch_into(out, *inputs, num_landmarks, pinv_iterations, scale))

    return True
