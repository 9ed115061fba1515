"""Atomic checkpoint writes, so that a run killed or out of disk at any moment leaves loadable checkpoints.

fairseq 0.12 saves a checkpoint to ``name.tmp`` and renames it, then copies it to
``checkpoint_last.pt`` (and ``checkpoint_best.pt``) with ``PathManager.copy``, which
overwrites the destination in place: a run killed during that copy leaves a truncated
``checkpoint_last.pt``, which the rerun then fails to load. And its ``.tmp`` name is the
same for every writer and stays behind when the save fails (a full disk). The plugin sends
both local writes through :func:`atomic_open`: a per-process temporary name, renamed into
place when complete and removed when not.
"""

import shutil

from fairseq import checkpoint_utils
from fairseq.file_io import PathManager

from .files import atomic_open

__all__ = ["make_checkpoint_copies_atomic"]

_fairseq_copy = PathManager.copy
_fairseq_save = checkpoint_utils.torch_persistent_save


def _atomic_copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
    if PathManager.path_requires_pathmanager(dst_path):  # remote storage (an iopath handler): as before
        return _fairseq_copy(src_path, dst_path, overwrite)
    if not overwrite and PathManager.exists(dst_path):
        raise FileExistsError(f"{dst_path} exists and overwrite=False")
    with open(src_path, "rb") as src, atomic_open(dst_path, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 22)
    return True


def _atomic_save(obj, filename, async_write: bool = False) -> None:
    if async_write or PathManager.path_requires_pathmanager(filename):
        return _fairseq_save(obj, filename, async_write)
    with atomic_open(filename, "wb") as handle:
        checkpoint_utils._torch_persistent_save(obj, handle)


def make_checkpoint_copies_atomic() -> None:
    """Route fairseq's local checkpoint saves and ``PathManager.copy`` through a temporary file and a rename."""
    PathManager.copy = staticmethod(_atomic_copy)
    checkpoint_utils.torch_persistent_save = _atomic_save
