"""The checkout's commands of the export: `python -m export` (tfseqgan-export)
and `python -m export.onnx_sample` (tfseqgan-sample). The code is the package
tfseqgan.export; these two modules only run it, so that the commands of the
README work from a checkout as they always have. The wheel does not ship
this folder (docs/design.md, "Package layout")."""
