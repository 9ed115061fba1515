"""submitit executors from a Resources block, and waiting on jobs with progress."""

import logging
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import submitit

from memobert_plugin.cluster.config import Resources

__all__ = ["make_executor", "limit_threads", "log_to_stdout", "wait_for", "run_throttled", "POLL_S"]

logger = logging.getLogger("memobert.slurm")

#: the directory holding memobert_plugin (site-packages, or a checkout)
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: seconds between looks at job states (Slurm's come from sacct, which should not be hammered)
POLL_S = {"local": 1.0, "slurm": 5.0}


def make_executor(
    cluster: str, folder: str, resources: Resources, name: str,
    array_parallelism: Optional[int] = None, dependency: Optional[str] = None,
) -> submitit.Executor:
    """An executor for ``cluster`` ('slurm' or 'local') asking for ``resources``.

    The executors are built directly: submitit's AutoExecutor cannot set the local
    executor's signal delay.
    """
    # jobs unpickle memobert_plugin.*: make it importable wherever they run, installed or not
    # (Slurm exports the submitting environment; the local executor copies it)
    pythonpath = os.environ.get("PYTHONPATH", "")
    if _PACKAGE_PARENT not in pythonpath.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, pythonpath) if p)
    if cluster == "local":
        executor = submitit.LocalExecutor(folder, max_num_timeout=resources.max_timeouts)
        executor.update_parameters(
            nodes=1, tasks_per_node=resources.tasks, gpus_per_node=resources.gpus_per_node,
            timeout_min=resources.timeout_min, signal_delay_s=resources.signal_delay_s,
        )
        return executor
    additional = dict(resources.additional)
    if dependency:
        additional["dependency"] = dependency
    params: Dict[str, Any] = dict(
        job_name=name, nodes=resources.nodes, ntasks_per_node=resources.tasks, cpus_per_task=resources.cpus_per_task,
        gpus_per_node=resources.gpus_per_node or None, mem=f"{round(resources.mem_gb * 1024)}M",
        time=resources.timeout_min, partition=resources.partition, constraint=resources.constraint,
        signal_delay_s=resources.signal_delay_s, array_parallelism=array_parallelism,
        additional_parameters=additional or None,
        # a rank that dies ends the job, rather than leaving the others waiting on it until a timeout
        srun_args=["--kill-on-bad-exit=1"],
    )
    executor = submitit.SlurmExecutor(folder, max_num_timeout=resources.max_timeouts)
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor


def limit_threads(threads: int) -> None:
    """Use the task's CPUs only: several tasks may share a node, and torch would take every core."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # for subprocesses
    import torch

    torch.set_num_threads(threads)


def log_to_stdout() -> None:
    """In a job: log lines with time and source to the task's stdout log, submitit's only once."""
    # force: importing the job's pickle (or a previous attempt in this process) may have set up logging already
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO, stream=sys.stdout,
                        force=True)
    logging.getLogger("submitit").propagate = False  # it has its own handler


def _states(jobs: Sequence[submitit.Job]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for job in jobs:
        state = job.state
        counts[state] = counts.get(state, 0) + 1
    return counts


def wait_for(jobs: Sequence[submitit.Job], what: str, poll_s: float, report_s: float = 300.0) -> None:
    """Block until every job ended, logging the job states when they change (and every report_s)."""
    last, last_time = None, -report_s
    while not all(job.done() for job in jobs):
        states = _states(jobs)
        if states != last or time.monotonic() - last_time >= report_s:
            logger.info("%s: %s", what, ", ".join(f"{count} {state}" for state, count in sorted(states.items())))
            last, last_time = states, time.monotonic()
        time.sleep(poll_s)
    logger.info("%s: all %d ended", what, len(jobs))


def run_throttled(
    executor: submitit.Executor, function: Callable, items: Sequence[Any], limit: int, what: str, poll_s: float,
) -> List[submitit.Job]:
    """Submit ``function(item)`` for each item, at most ``limit`` running at once; wait for all.

    The local executor has no job arrays, hence no concurrency limit of its own. Returns the
    jobs in the items' order.
    """
    pending, running, submitted = list(items), [], []
    start = time.monotonic()
    while pending or running:
        while pending and len(running) < limit:
            running.append(executor.submit(function, pending.pop(0)))
            submitted.append(running[-1])
        time.sleep(poll_s)
        still = [job for job in running if not job.done()]
        if len(still) < len(running):
            running = still
            done = len(submitted) - len(running)
            eta = (time.monotonic() - start) / done * (len(items) - done)
            logger.info("%s: %d/%d done (ETA %.0f s)", what, done, len(items), eta)
    return submitted
