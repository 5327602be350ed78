"""The command-line entry points: `tfseqgan-train` (train.py, also `python
main.py` in a checkout), `tfseqgan-export` (tfseqgan/export/__main__.py) and
`tfseqgan-sample` (tfseqgan/export/onnx_sample.py). Each is a thin layer over
the Python API (tfseqgan/api.py) and the export package. Nothing here imports
TensorFlow at import time."""
