"""advgen: regenerate, publish and verify the datasets of "Adversarial Examples are not Bugs, they are
Features" (Ilyas et al., NeurIPS 2019).

Stages, one module each: recipe -> sources -> models -> attacks -> writers -> (cards, publish) -> verify.
"""

__version__ = "0.1.0"
