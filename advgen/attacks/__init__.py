"""Attacks, one per file, all through one descent loop; they work in [0,1] pixels (normalisation is in the model).

    descent.py    the loop: normalised (l2) or sign (linf) steps, projection on the ball, keep-best iterate
    pgd.py        PGD, targeted (D̂det, D̂rand) and untargeted (adversarial training, robust accuracy)
    inversion.py  representation inversion (D̂R, D̂NR): match the penultimate features of x from x0

A recipe's attack block builds the configured attack: `recipe.attack.build(model)` (advgen.recipe).
"""

from advgen.attacks.descent import descend
from advgen.attacks.pgd import choose_targets, pgd, targeted_pgd, untargeted_pgd

__all__ = ["descend", "pgd", "targeted_pgd", "untargeted_pgd", "choose_targets"]
