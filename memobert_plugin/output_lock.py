"""One writer per output directory: an exclusive ``flock`` on a lock file inside it.

``memobert-prepare --out``, each ``memobert-cv`` fold and each training save dir take one, so
a second command on the same output stops at once with a message naming the directory and
the process holding it, instead of interleaving files. The kernel releases the lock when the
holder exits, however it exits (kill -9 included), so a rerun after a crash is never blocked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import IO, Dict, Iterator

__all__ = ["OutputBusyError", "lock_output_dir", "output_lock", "LOCK_NAME"]

LOCK_NAME = ".memobert.lock"

#: locks this process holds, by directory: taking one twice (two runs in one process) is not a conflict
_HELD: Dict[str, IO] = {}


class OutputBusyError(RuntimeError):
    """Another process is writing to the directory."""


def lock_output_dir(directory: str, what: str) -> str:
    """Hold ``directory``'s lock until this process exits; ``what`` names the output in the refusal.

    Returns the lock file's path. The holder's pid is written into the file for the message.
    """
    os.makedirs(directory, exist_ok=True)
    key = os.path.realpath(directory)
    path = os.path.join(directory, LOCK_NAME)
    if key in _HELD:
        return path
    handle = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise OutputBusyError(
            f"{directory}: {what} is being written by another process{f' (pid {holder})' if holder.isdigit() else ''}; "
            "wait for it to finish, stop it, or choose another directory"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _HELD[key] = handle
    return path


@contextlib.contextmanager
def output_lock(directory: str, what: str) -> Iterator[str]:
    """Hold ``directory``'s lock for the block (kept if this process held it already)."""
    key = os.path.realpath(directory) if os.path.isdir(directory) else None
    held_before = key in _HELD
    path = lock_output_dir(directory, what)
    try:
        yield path
    finally:
        if not held_before:
            _HELD.pop(os.path.realpath(directory)).close()  # closing the file releases the lock
