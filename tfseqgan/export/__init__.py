"""Export of a trained tfseqgan generator: a SavedModel, ONNX sampler and
scorer models, a manifest, all verified against the in-memory model.

`tfseqgan-export --run_dir=RUN` writes RUN/export; `tfseqgan-sample
MODEL.onnx --num 5` samples from the ONNX side with onnxruntime, NumPy
and onnx only (in a checkout: `python -m export` and `python -m export.onnx_sample`,
the shims in the checkout's export/). This package's __init__ imports
nothing, so the ONNX runner never loads TensorFlow.
"""
