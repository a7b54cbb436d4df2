"""Models: the classifiers the attacks run against and the verification trains.

    nets.py        architectures; `Classifier` = Normalize (inside the model) + net, [0,1] pixels -> logits
    airbench.py    the airbench94 network and its fast training recipe (the `fast` CIFAR-10 verifier)
    robustbench.py RobustBench models (the package's architectures, offline files or its loader), features chosen
    files.py       checkpoint files read safely: sha256, torch.load(weights_only=True), one-line errors
    checkpoint.py  checkpoints as safetensors + a JSON of everything else (never a pickle), checked on load
    convert.py     PyTorch .pt files (plain state dicts, MadryLab robustness, RobustBench) converted to ours
    fast.py        a frozen copy of a model arranged for fast attacks (BN folded, NHWC, bf16 where native)
    train.py       training loops (standard, adversarial), clean/robust accuracy, `advgen train RECIPE`
"""

from advgen.errors import CheckpointError
from advgen.models.checkpoint import load_checkpoint, read_meta, save_checkpoint
from advgen.models.convert import load_model
from advgen.models.nets import Classifier, build_classifier

__all__ = ["Classifier", "CheckpointError", "build_classifier", "load_checkpoint", "load_model", "read_meta",
           "save_checkpoint"]
