"""Adversarial objectives of the training loop, by `--objective` value.

Adding a method is one new module here with an `Objective` subclass and one
entry in `OBJECTIVES`; see docs/design.md.
"""

from tfseqgan.objectives.base import Objective
from tfseqgan.objectives.gumbel import Gumbel
from tfseqgan.objectives.seqgan import SeqGAN
from tfseqgan.objectives.wgan_gp import WGANGP

OBJECTIVES = {"seqgan": SeqGAN, "gumbel": Gumbel, "wgan_gp": WGANGP}

__all__ = ["OBJECTIVES", "Gumbel", "Objective", "SeqGAN", "WGANGP"]
