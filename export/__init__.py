"""Export of a trained tfseqgan generator: a SavedModel, ONNX sampler and
scorer models, a manifest, all verified against the in-memory model.

`python -m export --run_dir=RUN` writes RUN/export; `python -m
export.onnx_sample MODEL.onnx --num 5` samples from the ONNX side with
onnxruntime and NumPy only. This package's __init__ imports nothing, so the
ONNX runner never loads TensorFlow.
"""
