"""Adversarial objectives of the training loop, by `--objective` value.

Adding a method is one new module here with an `Objective` subclass and one
entry in `OBJECTIVES`; see docs/design.md.
"""

from tfseqgan.objectives.base import Objective
from tfseqgan.objectives.seqgan import SeqGAN

OBJECTIVES = {"seqgan": SeqGAN}

__all__ = ["OBJECTIVES", "Objective", "SeqGAN"]
