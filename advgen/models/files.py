"""Reading checkpoint files safely: the bytes (sha256) and PyTorch pickles (weights only), every failure one line.

    readable_sha256(path)   sha256 of a file; an unreadable one (permissions, a directory) is a CheckpointError
    read_torch_file(path)   torch.load(weights_only=True): tensors and plain containers, never code
    one_line(text, limit)   a library message as one short line (the CLI prints exactly one)

Used by checkpoint.py (advgen's safetensors + JSON), convert.py (.pt imports) and robustbench.py (RobustBench's
files), which build models from what these read.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch

from advgen.errors import CheckpointError
from advgen.writers.layout import sha256_file


def one_line(text, limit: int = 300) -> str:
    """Library messages span lines; our errors must stay one line (the CLI prints exactly one)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def readable_sha256(path) -> str:
    """sha256_file, with a file that cannot be read (permissions, a directory...) as a one-line CheckpointError."""
    try:
        return sha256_file(path)
    except OSError as e:
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read ({e.strerror or e}); fix its "
                              "permissions or give another file") from None


def read_torch_file(path) -> object:
    """torch.load with weights_only=True, mapping every failure to a one-line CheckpointError.

    weights_only=True is passed explicitly, so TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD cannot turn it off.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # files written with pickle protocol > 2 (plain pickle.dump) trigger a harmless notice
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        if not any("Weights only load failed" in ln for ln in lines):
            raise CheckpointError(f"checkpoint {str(path)!r} is truncated or corrupt "
                                  f"({one_line(e, 150)}); re-download it") from None
        # torch's message is a page long; the line naming the refused global/opcode is what matters
        reason = next((ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln), lines[-1])
        raise CheckpointError(
            f"checkpoint {str(path)!r}: torch.load(weights_only=True) refuses to unpickle it "
            f"({one_line(reason, 160)}); it is not a plain checkpoint of tensors (or not a PyTorch file at "
            "all). If you trust it, convert it in a trusted environment: load it there with weights_only=False "
            "and re-save only the tensors, e.g. torch.save(model.state_dict(), 'weights.pt')") from None
    except Exception as e:  # truncated zip -> OSError/RuntimeError, empty -> EOFError, junk -> KeyError, ...
        raise CheckpointError(f"checkpoint {str(path)!r} is not .safetensors and is not a readable PyTorch file: "
                              f"truncated or corrupt ({type(e).__name__}: {one_line(e, 150)}); "
                              "re-download it") from None
