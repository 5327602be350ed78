"""python main.py: tfseqgan-train from a checkout (the same command, flags and
flagfiles; see tfseqgan/cli/train.py and README.md)."""

from tfseqgan.cli.train import run

if __name__ == "__main__":
    run()
