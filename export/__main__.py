"""python -m export: tfseqgan-export from a checkout (tfseqgan/export/__main__.py)."""

from tfseqgan.export.__main__ import run

if __name__ == "__main__":
    run()
