"""Atomic file writes and checksums: a killed run never leaves a half-written file in place."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from typing import IO, Iterator, Optional

__all__ = ["atomic_open", "write_json", "read_json", "sha256_file", "file_identity"]

_HASH_CHUNK = 1 << 20


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", newline: Optional[str] = None) -> Iterator[IO]:
    """Write to a temporary name and rename it over ``path`` only if the block completes.

    ``newline`` is :func:`open`'s (``""`` for the csv module).
    """
    tmp = f"{path}.{os.getpid()}.tmp"  # per process: two commands on one work dir do not collide
    encoding = None if "b" in mode else "utf-8"
    try:
        with open(tmp, mode, encoding=encoding, newline=newline) as handle:
            yield handle
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: str, data: object) -> None:
    with atomic_open(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")


def read_json(path: str) -> dict:
    """A JSON file's content; text that is not JSON is a ``ValueError`` naming the file."""
    with open(path, encoding="utf-8") as handle:
        try:
            return json.load(handle)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not JSON ({err})") from None


def sha256_file(path: str) -> str:
    """Hex SHA-256 of a file, read in chunks (files of any size, constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_identity(path: str) -> str:
    """What tells a changed media file from the one a stage read: its size and modification time (ns).

    Cheap for any size, and a file fixed in place (rewritten, copied over, touched) gets a new
    identity. A folder (of face crops) is identified by its files' names and identities; a
    missing path is ``missing``. Content hashes would also catch an edit that restores the old
    mtime, but reading every recording on each run costs as much as decoding it.
    """
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return "missing"
    if not os.path.isdir(path):
        return f"{stat.st_size}:{stat.st_mtime_ns}"
    listing = "".join(f"{name}={file_identity(os.path.join(path, name))}\n" for name in sorted(os.listdir(path)))
    return "dir:" + hashlib.sha256(listing.encode()).hexdigest()
