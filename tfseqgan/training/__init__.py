"""The training loop (`loop.Trainer`), the distribution plumbing every
step uses (`replicas`), the shared steps (`steps`) and evaluation
(`evaluation`). Objectives live in `tfseqgan.objectives`."""
