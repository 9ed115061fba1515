"""A data dir checked against what memobert-prepare (or the demo world) wrote: ``dataset.json``'s checksums.

``memobert-prepare write`` records the SHA-256 of ``dict.txt`` and of every file of a split.
A file edited or replaced afterwards (a ``dict.txt`` with two entries swapped, features from
another run copied in) would otherwise train without a word, so the tasks compare them when a
split is loaded. Hashing a large feature store takes a while, so a match is remembered in
``.verified.json`` beside ``dataset.json`` (by size and modification time): only a file that
changed, or the first start, is hashed again. Data dirs not written by memobert-prepare (no
``dataset.json``) have nothing to compare with.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Dict, List

from ..files import atomic_open, read_json, sha256_file

__all__ = ["check_split_files", "DataChangedError", "VERIFIED_NAME"]

logger = logging.getLogger(__name__)

VERIFIED_NAME = ".verified.json"


class DataChangedError(ValueError):
    """A data file differs from the checksum dataset.json recorded for it."""


def _read_verified(path: str) -> Dict[str, list]:
    try:
        with open(path, encoding="utf-8") as handle:
            verified = json.load(handle)
        return verified if isinstance(verified, dict) else {}
    except (OSError, ValueError):  # absent or damaged: hash again
        return {}


def check_split_files(data_dir: str, split: str) -> None:
    """``dict.txt`` and ``{split}.*`` against dataset.json's checksums; a mismatch names the files."""
    dataset_path = os.path.join(data_dir, "dataset.json")
    if not os.path.isfile(dataset_path):
        return
    dataset = read_json(dataset_path)
    checksums = dataset.get("checksums") or {}
    writer = dataset.get("generator", "memobert-prepare write")  # the demo world names itself
    names = [n for n in checksums if n == "dict.txt" or n.startswith(f"{split}.")]
    verified_path = os.path.join(data_dir, VERIFIED_NAME)
    verified = _read_verified(verified_path)
    changed: List[str] = []
    missing: List[str] = []
    updated = False
    for name in names:
        path = os.path.join(data_dir, name)
        if not os.path.isfile(path):
            missing.append(name)
            continue
        stat = os.stat(path)
        seen = [stat.st_size, stat.st_mtime_ns, checksums[name]]
        if verified.get(name) == seen:
            continue
        if stat.st_size > 1 << 28:
            logger.info("checking %s (%.1f GB) against dataset.json; remembered for later starts", path, stat.st_size / 1e9)
        if sha256_file(path) == checksums[name]:
            verified[name], updated = seen, True
        else:
            changed.append(name)
    if changed or missing:
        problems = [f"{', '.join(changed)} changed" if changed else "", f"{', '.join(missing)} missing" if missing else ""]
        raise DataChangedError(
            f"{data_dir}: {' and '.join(p for p in problems if p)} since {writer.split()[0]} wrote them "
            f"(their SHA-256 in {dataset_path} differs); the data no longer fits together. "
            f"Restore the files, or rerun {writer} for this data dir"
        )
    if updated:
        try:
            with atomic_open(verified_path) as handle:
                json.dump(verified, handle, indent=1, sort_keys=True)
        except OSError:  # a read-only data dir: the files are hashed again next time
            pass
