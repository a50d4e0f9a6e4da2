"""Serving on Triton Inference Server: model repositories from exports and engines, and a server to run them.

``repository`` writes a model repository (config.pbtxt, the python-backend model.py, README) for an
ONNX file or a TensorRT engine; ``runtime`` finds or creates the serving environment (the
``tritonserver`` binary that nvidia-pytriton bundles, in a venv with numpy 1 for its python-backend
stub); ``server`` starts, checks and stops the server; ``bench`` measures served throughput and latency
against ONNX Runtime in process. ``python_model`` and ``tokenizer_model`` are the model.py files
written into repositories: they import neither torch nor seo-export.

Above ``bench`` (its benchmark writes results through ``bench.results``), below ``cli``.
"""
