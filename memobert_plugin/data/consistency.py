"""A data dir checked against what memobert-prepare (or the demo world) wrote: ``dataset.json``'s checksums.

``memobert-prepare write`` records the SHA-256 of ``dict.txt`` and of every file of a split.
A file edited or replaced afterwards (a ``dict.txt`` with two entries swapped, features from
another run copied in) would otherwise train without a word, so the tasks compare them when a
split is loaded. Hashing a large feature store takes a while, so each file's hash is remembered
in ``.verified.json`` beside ``dataset.json`` under its size, modification time, inode change
time and inode (:class:`~memobert_plugin.files.DigestCache`): only a file that changed, or the
first start, is hashed again, and an edit whose size and mtime were restored still changes the
inode change time, which no user can set back. Data dirs not written by memobert-prepare (no
``dataset.json``) have nothing to compare with.
"""

from __future__ import annotations

import os
from typing import List

from memobert_plugin.files import DigestCache, read_json

__all__ = ["check_split_files", "DataChangedError", "VERIFIED_NAME"]

VERIFIED_NAME = ".verified.json"


class DataChangedError(ValueError):
    """A data file differs from the checksum dataset.json recorded for it."""


def check_split_files(data_dir: str, split: str) -> None:
    """``dict.txt`` and ``{split}.*`` against dataset.json's checksums; a mismatch names the files."""
    dataset_path = os.path.join(data_dir, "dataset.json")
    if not os.path.isfile(dataset_path):
        return
    dataset = read_json(dataset_path)
    checksums = dataset.get("checksums") or {}
    writer = dataset.get("generator", "memobert-prepare write")  # the demo world names itself
    names = [n for n in checksums if n == "dict.txt" or n.startswith(f"{split}.")]
    verified = DigestCache(os.path.join(data_dir, VERIFIED_NAME))
    changed: List[str] = []
    missing: List[str] = []
    for name in names:
        path = os.path.join(data_dir, name)
        if not os.path.isfile(path):
            missing.append(name)
        elif verified.sha256(path, key=name) != checksums[name]:
            changed.append(name)
    verified.save()
    if changed or missing:
        problems = [f"{', '.join(changed)} changed" if changed else "", f"{', '.join(missing)} missing" if missing else ""]
        raise DataChangedError(
            f"{data_dir}: {' and '.join(p for p in problems if p)} since {writer.split()[0]} wrote them "
            f"(their SHA-256 in {dataset_path} differs); the data no longer fits together. "
            f"Restore the files, or rerun {writer} for this data dir"
        )
