"""One writer per output directory: an exclusive ``flock`` on a lock file inside it.

``memobert-prepare --out``, each ``memobert-cv`` fold and each training save dir take one, so
a second command on the same output stops at once with a message naming the directory and
the process holding it, instead of interleaving files. The kernel releases the lock when the
holder exits, however it exits (kill -9 included), so a rerun after a crash is never blocked.
The tasks of a cluster array, which write disjoint parts of one output on purpose, take it
shared (and each its own part's lock exclusively): they run together, but not beside a
command that takes the whole output.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import IO, Dict, Iterator, Tuple

__all__ = ["OutputBusyError", "lock_output_dir", "output_lock", "LOCK_NAME"]

LOCK_NAME = ".memobert.lock"

#: locks this process holds, by (directory, lock file): taking one twice (two runs in one process) is no conflict
_HELD: Dict[Tuple[str, str], IO] = {}


class OutputBusyError(RuntimeError):
    """Another process is writing to the directory."""


def lock_output_dir(directory: str, what: str, shared: bool = False, name: str = LOCK_NAME) -> str:
    """Hold ``directory``'s lock until this process exits; ``what`` names the output in the refusal.

    Returns the lock file's path. An exclusive holder writes its pid into the file for the message.
    """
    os.makedirs(directory, exist_ok=True)
    key = (os.path.realpath(directory), name)
    path = os.path.join(directory, name)
    if key in _HELD:
        return path
    handle = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise OutputBusyError(
            f"{directory}: {what} is being written by another process{f' (pid {holder})' if holder.isdigit() else ''}; "
            "wait for it to finish, stop it, or choose another directory"
        ) from None
    if not shared:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
    _HELD[key] = handle
    return path


@contextlib.contextmanager
def output_lock(directory: str, what: str, shared: bool = False, name: str = LOCK_NAME) -> Iterator[str]:
    """Hold ``directory``'s lock for the block (kept if this process held it already)."""
    held_before = (os.path.realpath(directory), name) in _HELD
    path = lock_output_dir(directory, what, shared, name)
    try:
        yield path
    finally:
        if not held_before:
            _HELD.pop((os.path.realpath(directory), name)).close()  # closing the file releases the lock
