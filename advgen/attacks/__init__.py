"""Attacks: targeted/untargeted PGD (pgd.py) and representation inversion (inversion.py), one descent loop."""

from advgen.attacks.descent import descend
from advgen.attacks.pgd import choose_targets, pgd, targeted_pgd, untargeted_pgd

__all__ = ["descend", "pgd", "targeted_pgd", "untargeted_pgd", "choose_targets"]
