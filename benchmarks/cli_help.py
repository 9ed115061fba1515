"""Start-up cost of every console script: ``SCRIPT --help`` against two same-run baselines.

Per script, the median wall and CPU time of ``--help`` over a few runs, next to the bare
interpreter (``python -c pass``) and ``python -c "import torch"`` measured in the same run
(interleaved, so a busy machine slows all alike). The target is under 2 s of wall time on an
idle machine, i.e. well below the torch import: no command imports torch or fairseq for
--help. Run: ``python benchmarks/cli_help.py [--runs 5]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from importlib.metadata import distribution
from typing import Dict, List

BIN = os.path.dirname(sys.executable)


def _timed(command: List[str]) -> tuple:
    """Wall and CPU seconds (children's user + system) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    scripts = sorted(e.name for e in distribution("memobert").entry_points if e.group == "console_scripts")
    commands: Dict[str, List[str]] = {"python -c pass": [sys.executable, "-c", "pass"],
                                      "import torch": [sys.executable, "-c", "import torch"]}
    commands.update({f"{s} --help": [os.path.join(BIN, s), "--help"] for s in scripts})
    times: Dict[str, list] = {name: [] for name in commands}
    for name, command in commands.items():  # warm the file cache
        _timed(command)
    for _ in range(args.runs):
        for name, command in commands.items():
            times[name].append(_timed(command))
    torch_wall = statistics.median(w for w, _ in times["import torch"])
    print(f"{'command':32} {'wall s':>8} {'cpu s':>8} {'wall / import torch':>20}")
    for name, samples in times.items():
        wall, cpu = statistics.median(w for w, _ in samples), statistics.median(c for _, c in samples)
        print(f"{name:32} {wall:8.3f} {cpu:8.3f} {wall / torch_wall:20.2f}")


if __name__ == "__main__":
    main()
