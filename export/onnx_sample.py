"""python -m export.onnx_sample: tfseqgan-sample from a checkout (tfseqgan/export/onnx_sample.py).
Imports no TensorFlow."""

import sys

from tfseqgan.export.onnx_sample import main

if __name__ == "__main__":
    sys.exit(main())
