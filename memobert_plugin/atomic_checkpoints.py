"""Atomic checkpoint copies, so that a run killed at any moment leaves loadable checkpoints.

fairseq 0.12 writes the first file of a save atomically (``name.tmp``, then a rename) but
then copies it to ``checkpoint_last.pt`` (and ``checkpoint_best.pt``) with
``PathManager.copy``, which overwrites the destination in place. A run killed during that
copy leaves a truncated ``checkpoint_last.pt``, and the rerun, which resumes from it, fails
to load it. The plugin makes local copies go to a temporary file renamed into place.
"""

import os
import shutil

from fairseq.file_io import PathManager

__all__ = ["make_checkpoint_copies_atomic"]

_fairseq_copy = PathManager.copy


def _atomic_copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
    if PathManager.path_requires_pathmanager(dst_path):  # remote storage (an iopath handler): as before
        return _fairseq_copy(src_path, dst_path, overwrite)
    if not overwrite and os.path.exists(dst_path):
        raise FileExistsError(f"{dst_path} exists and overwrite=False")
    tmp_path = dst_path + ".tmp"
    shutil.copyfile(src_path, tmp_path)
    os.replace(tmp_path, dst_path)
    return True


def make_checkpoint_copies_atomic() -> None:
    """Route fairseq's ``PathManager.copy`` of local files through a temporary file and a rename."""
    PathManager.copy = staticmethod(_atomic_copy)
