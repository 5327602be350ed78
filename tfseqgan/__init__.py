"""tfseqgan: SeqGAN (Yu et al., AAAI 2017) and other text GANs in TensorFlow 2 / Keras 3.

The public API (docs/api.md). Importing the package loads nothing heavy: the
API's names load TensorFlow when first used, so `tfseqgan-sample` (onnxruntime
only) can live in the same package.
"""

__version__ = "0.1.0"

__all__ = [
    "TextData",
    "train",
    "Run",
    "Sampler",
    "load_sampler",
    "export_run",
    "preset_names",
    "preset_path",
    "__version__",
]

_API = {"TextData", "train", "Run", "Sampler", "load_sampler", "export_run"}
_OPTIONS = {"preset_names", "preset_path"}


def __getattr__(name):
    if name in _API:
        from tfseqgan import api

        return getattr(api, name)
    if name in _OPTIONS:
        from tfseqgan import options

        return getattr(options, name)
    raise AttributeError(f"module 'tfseqgan' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
