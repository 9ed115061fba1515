"""Atomic file writes and checksums: a killed run never leaves a half-written file in place, and a
changed file is never taken for the one that was checked."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from typing import IO, Iterator, Optional

__all__ = ["atomic_open", "write_json", "read_json", "sha256_file", "DigestCache", "file_identity"]

logger = logging.getLogger(__name__)

_HASH_CHUNK = 1 << 20
_LARGE = 1 << 28  # files whose hashing is worth a log line


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


#: a digest taken this soon after the file's last change is not remembered: a write in the same
#: clock tick of the filesystem (coarse, or 2 s on FAT) would leave the same stat behind
RACY_NS = 2 * 10**9


def _stat_key(stat: os.stat_result) -> list:
    # the inode change time moves on every write and cannot be set back by a user (utime sets only mtime)
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


class DigestCache:
    """SHA-256s of files, each remembered under the file's stat in a JSON file.

    A file is hashed again only when its size, modification time, inode change time or inode
    differ from when it was hashed: an edit that restores the size and mtime still moves the
    ctime, so content is never trusted on size and mtime alone, and an unchanged file is read
    once. :meth:`save` writes the cache (merged with what another process saved meanwhile);
    a cache that cannot be read or written only costs hashing again.
    """

    def __init__(self, path: str):
        self.path = path
        self._entries = self._read()
        self._new: dict = {}

    def _read(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as handle:
                entries = json.load(handle)
            return entries if isinstance(entries, dict) else {}
        except (OSError, ValueError):  # absent or damaged: hash again
            return {}

    def sha256(self, path: str, key: Optional[str] = None) -> str:
        """``path``'s SHA-256, hashed only if its stat changed; ``key`` names it in the cache (default: ``path``)."""
        key = key or path
        stat = os.stat(path)
        seen = _stat_key(stat)
        entry = self._entries.get(key)
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == seen:
            return entry[1]
        if stat.st_size > _LARGE:
            logger.info("hashing %s (%.1f GB), remembered in %s for later runs", path, stat.st_size / 1e9, self.path)
        started = time.time_ns()
        digest = sha256_file(path)
        if stat.st_ctime_ns < started - RACY_NS:
            self._entries[key] = self._new[key] = [seen, digest]
        return digest

    def save(self) -> None:
        if not self._new:
            return
        entries = {**self._read(), **self._new}
        try:
            with atomic_open(self.path) as handle:
                json.dump(entries, handle, indent=0, sort_keys=True)
        except OSError:  # a read-only folder: the files are hashed again next time
            return
        self._new = {}


def file_identity(path: str, digests: DigestCache) -> str:
    """What tells a changed media file from the one a stage read: its content (SHA-256).

    ``digests`` remembers each file's hash under its stat (:class:`DigestCache`), so a run reads
    only files that changed; a file replaced by another of the same size and modification time
    is caught by its inode change time and hashed again. A folder (of face crops) is identified
    by its files' names and identities; a missing path is ``missing``.
    """
    if not os.path.isdir(path):
        try:
            return digests.sha256(path)
        except FileNotFoundError:
            return "missing"
    listing = "".join(f"{name}={file_identity(os.path.join(path, name), digests)}\n"
                      for name in sorted(os.listdir(path)))
    return "dir:" + hashlib.sha256(listing.encode()).hexdigest()
