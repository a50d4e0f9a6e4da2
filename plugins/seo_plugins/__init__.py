"""GPU side of seo-export: Triton kernels for the seo ops, their AOT build, and TensorRT plugins."""
