"""Weights-only checkpoint loading for fairseq checkpoints, through an explicit allowlist.

Since torch 2.6 ``torch.load`` unpickles only tensors and plain containers unless told
otherwise, and fairseq 0.12 calls it without ``weights_only``. Its checkpoints hold a
few more types (numpy scalars in the logged metrics, fairseq's meters' state). Rather
than switch weights-only loading off, the plugin names exactly those types here, at
import, so ``fairseq-train --restore-file`` and ``fairseq-validate --path`` work and a
checkpoint that asks for anything else (e.g. a crafted one that would run code on
unpickling) is still refused.
"""

from __future__ import annotations

import argparse
import pickle
import zipfile
from typing import Any, Dict

import numpy as np
import torch

__all__ = ["ALLOWED_GLOBALS", "register_safe_globals", "load_checkpoint_weights_only", "UnsafeCheckpointError"]


def _numpy_scalar_reconstructor():
    # numpy 2 moved the pickled scalar reconstructor to numpy._core
    core = getattr(np, "_core", None) or np.core
    return core.multiarray.scalar


#: what fairseq 0.12's trainer pickles beyond tensors and plain containers
ALLOWED_GLOBALS = [
    _numpy_scalar_reconstructor(),  # metric values logged as numpy scalars
    np.dtype,
    *{type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")},
    argparse.Namespace,  # the options of pre-hydra checkpoints, e.g. the released wav2vec 2.0 wav2vec_small.pt
]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs a type outside the allowlist to be unpickled."""


def register_safe_globals() -> None:
    """Allow exactly :data:`ALLOWED_GLOBALS` for every weights-only ``torch.load`` in this process."""
    torch.serialization.add_safe_globals(ALLOWED_GLOBALS)


def load_checkpoint_weights_only(path: str) -> Dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with the allowlist; a clear refusal or read error.

    Files in torch's zip format are memory-mapped, so reading a large checkpoint's config, or
    the model weights without the optimizer state, reads only what is used.
    """
    register_safe_globals()
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"{path}: refused by weights-only loading; it needs types outside memobert's allowlist "
            f"(a checkpoint from another program, or one crafted to run code): {err}"
        ) from None
    except (EOFError, KeyError, RuntimeError) as err:  # what torch.load raises on empty, foreign or cut-off files
        raise ValueError(
            f"{path}: not a readable checkpoint (empty, truncated, or not written by torch.save): "
            f"{type(err).__name__}: {err}"
        ) from None
