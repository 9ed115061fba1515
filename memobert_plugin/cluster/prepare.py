"""Data preparation across a cluster: memobert-prepare's extractor stages as job arrays, then the write step.

The launcher validates and shards the manifest itself (``memobert-prepare manifest``: bad options
and a bad manifest fail before anything is queued). Then, for each stage in ``stages``, array task
k of ``tasks`` runs ``memobert-prepare STAGE ... --shards k/tasks``: shards k, k + tasks, ...,
each marked done as it finishes, so a requeued or resubmitted task does only what is missing.
A last job (on Slurm after the arrays, whatever their outcome) runs ``memobert-prepare all`` with
the same options: the text stage, each extractor stage over the whole plan (it finds the shards
done and only records the stage; a shard a failed task left is extracted there), and the write
step. A shard's output does not depend on the process that made it, so the data dir is byte for
byte the single-machine run's.
"""

import argparse
import contextlib
import io
import logging
import os
from typing import Dict, List, Set

import submitit

from memobert_plugin.prepare.cli import build_parser, parse_arguments
from memobert_plugin.cluster.config import ConfigError, PrepareConfig, option_flags, waits
from memobert_plugin.cluster.executor import (
    POLL_S,
    limit_threads,
    log_to_stdout,
    make_executor,
    run_throttled,
    wait_for,
)

__all__ = ["PrepareTask", "submit_prepare", "prepare_commands"]

logger = logging.getLogger("memobert.slurm")

ARRAY_STAGES = ("acoustic", "visual")


class PrepareTask(submitit.helpers.Checkpointable):
    """One memobert-prepare command in a job. Checkpointable: requeued on time-out or preemption,
    the command resumes from the shards already marked done."""

    def __init__(self, threads: int):
        self.threads = threads

    def __call__(self, argv: List[str]) -> str:
        log_to_stdout()
        limit_threads(self.threads)
        from memobert_plugin.prepare.cli import main

        main(argv)
        return " ".join(argv[:1])


def _accepted_options(command: str) -> Set[str]:
    """The option names ``memobert-prepare COMMAND`` takes (each array task gets its stage's only)."""
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {action.dest for action in commands.choices[command]._actions}


def prepare_commands(config: PrepareConfig) -> Dict[str, List[List[str]]]:
    """memobert-prepare's arguments: ``manifest`` (one command), each array stage's tasks, ``all`` (one)."""
    unknown = [s for s in config.stages if s not in ARRAY_STAGES]
    if unknown:
        raise ConfigError(f"stages: {unknown} cannot run as arrays; choose from {list(ARRAY_STAGES)}")
    if config.tasks < 1:
        raise ConfigError(f"tasks must be >= 1, got {config.tasks}")
    location = {"manifest": config.manifest, "out": config.out, "split": config.split}

    def command(name: str, **extra) -> List[str]:
        options = {**location, **{k: v for k, v in config.prepare.items() if k in _accepted_options(name)}, **extra}
        return [name, *option_flags(options, "prepare")]

    commands = {"manifest": [command("manifest")], "all": [command("all", **config.prepare)]}
    for stage in config.stages:
        commands[stage] = [command(stage, shards=f"{k}/{config.tasks}") for k in range(config.tasks)]
    return commands


def _check(argv: List[str]) -> None:
    """memobert-prepare's own parser on the final command, so a typo fails before the queue."""
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            parse_arguments(argv)
    except SystemExit:
        raise ConfigError(f"memobert-prepare rejects the options: {errors.getvalue().strip().splitlines()[-1]}") from None


def submit_prepare(config: PrepareConfig) -> List[submitit.Job]:
    """Shard the manifest here, submit the stage arrays and the final job; wait if asked."""
    from memobert_plugin.prepare.cli import main

    commands = prepare_commands(config)
    _check(commands["all"][0])
    try:
        main(commands["manifest"][0])
    except SystemExit as exc:  # memobert-prepare's one-line error
        raise ConfigError(str(exc)) from None
    log_dir = config.log_dir or os.path.join(config.out, "work", "submitit")
    task = PrepareTask(config.resources.cpus_per_task)
    executor = make_executor(config.cluster, log_dir, config.resources, config.name,
                             array_parallelism=config.array_parallelism)
    arrays = [argv for stage in config.stages for argv in commands[stage]]
    if config.cluster == "local":
        # the local executor has no arrays: keep array_parallelism tasks running from here
        stage_jobs = run_throttled(executor, task, arrays, config.array_parallelism, "prepare tasks", POLL_S["local"])
        after = None
    else:
        stage_jobs = executor.map_array(task, arrays) if arrays else []
        array_ids = sorted({job.job_id.split("_")[0] for job in stage_jobs})
        after = "afterany:" + ":".join(array_ids) if array_ids else None
    final = make_executor(config.cluster, log_dir, config.resources, config.name + "-write",
                          dependency=after).submit(task, commands["all"][0])
    logger.info("submitted %d %s task(s) (%d per stage) and the final job %s\n  data dir: %s\n  logs: %s",
                len(stage_jobs), "+".join(config.stages), config.tasks, final.job_id, config.out, log_dir)
    if waits(config):
        wait_for([*stage_jobs, final], "preparation", POLL_S[config.cluster])
        final.result()
    return [*stage_jobs, final]
