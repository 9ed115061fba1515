"""Cross-validation sweeps as a job array (corpus x setting x fraction x seed x fold), and their tables.

Each array task runs ``memobert_plugin.evaluation.cross_validation.run_fold_job``: it skips a
fold whose result.json exists and resumes an interrupted one from its checkpoint_last.pt, so a
requeued task or a resubmitted sweep only does what is missing. On Slurm a collect job
(``afterany`` the array) then writes results.md, results.csv and low_resource.png.
"""

import dataclasses
import logging
import os
from typing import Dict, List, Sequence

import submitit

from memobert_plugin.evaluation.cli import NoResultsError, parse_folds, write_tables
from memobert_plugin.evaluation.cross_validation import FoldJob, plan_jobs, requested_cv_scheme, run_fold_job

from memobert_plugin.cluster.config import ConfigError, CVConfig, Resources, waits
from memobert_plugin.cluster.executor import (
    POLL_S,
    limit_threads,
    log_to_stdout,
    make_executor,
    run_throttled,
    wait_for,
)
from memobert_plugin.cluster.pretrain import check_fairseq_args

__all__ = ["FoldTask", "plan", "submit_cv", "submit_collect", "collect_tables"]

logger = logging.getLogger("memobert.slurm")


class FoldTask(submitit.helpers.Checkpointable):
    """One array task. Checkpointable: on time-out or preemption submitit requeues it, and
    run_fold_job picks up from the fold's checkpoint_last.pt."""

    def __init__(self, threads: int):
        self.threads = threads

    def __call__(self, job: FoldJob) -> Dict:
        log_to_stdout()
        limit_threads(self.threads)
        return run_fold_job(job)


def plan(config: CVConfig) -> List[FoldJob]:
    """Every fold job of the sweep, in memobert-cv's directory layout."""
    for name, data in config.corpora.items():
        if not os.path.isdir(data):
            raise ConfigError(f"corpora.{name}: {data} is not a directory")
    try:
        return plan_jobs(
            config.out, dict(config.corpora), settings=config.settings,
            folds={name: parse_folds(config.folds, data, requested_cv_scheme(config.job.extra_train_args))
                   for name, data in config.corpora.items()},
            seeds=config.seeds, fractions=config.fractions, pretrained=dict(config.pretrained),
            bert_init=config.bert_init, **dataclasses.asdict(config.job),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def collect_tables(out: str, planned: Sequence[str]) -> str:
    """write_tables, plus a note of the planned fold results that are missing (failed or not run)."""
    try:
        table = write_tables(out)
    except NoResultsError as exc:  # the collect job has always failed with a RuntimeError here
        raise RuntimeError(str(exc)) from None
    missing = [path for path in planned if not os.path.exists(path)]
    if missing:
        table += f"\n{len(missing)} of {len(planned)} fold jobs have no result yet, e.g. {os.path.dirname(missing[0])}\n"
    return table


def _log_dir(config: CVConfig) -> str:
    return config.log_dir or os.path.join(config.out, "submitit")


def _collect_resources(config: CVConfig) -> Resources:
    # reading JSON files: one CPU, briefly, on the sweep's partition and account
    return dataclasses.replace(
        config.resources, nodes=1, gpus_per_node=0, tasks_per_node=1, cpus_per_task=1, mem_gb=4,
        timeout_min=15, signal_delay_s=60,
    )


def submit_collect(config: CVConfig, jobs: Sequence[FoldJob], after: str = "") -> submitit.Job:
    """Submit the table-writing job (on Slurm after the array ``after``, whatever its outcome)."""
    executor = make_executor(
        config.cluster, _log_dir(config), _collect_resources(config), config.name + "-collect",
        dependency=f"afterany:{after}" if after else None,
    )
    return executor.submit(collect_tables, config.out, [job.result_path for job in jobs])


def submit_cv(config: CVConfig) -> List[submitit.Job]:
    """Submit the sweep's missing fold jobs and the collect job; wait (and print the table) if asked."""
    jobs = plan(config)
    todo = [job for job in jobs if not os.path.exists(job.result_path)]
    logger.info("%d fold jobs planned, %d already have a result, %d to run", len(jobs), len(jobs) - len(todo), len(todo))
    if todo:
        check_fairseq_args(todo[0].train_command()[1:])
    executor = make_executor(config.cluster, _log_dir(config), config.resources, config.name,
                             array_parallelism=config.array_parallelism)
    task = FoldTask(config.resources.cpus_per_task)
    if config.cluster == "local":
        # the local executor has no arrays: keep array_parallelism jobs running from here
        fold_jobs = run_throttled(executor, task, todo, config.array_parallelism, "fold jobs", POLL_S["local"])
        collect = submit_collect(config, jobs)
    else:
        fold_jobs = executor.map_array(task, todo) if todo else []
        array_id = fold_jobs[0].job_id.split("_")[0] if fold_jobs else ""
        collect = submit_collect(config, jobs, after=array_id)
        logger.info(
            "submitted array %s (%d tasks, at most %d at once) and collect job %s\n"
            "  fold results: %s/<corpus>/<setting>/frac*/seed*/fold*/result.json (train.log beside)\n"
            "  tables: %s/results.md once the array ends\n  logs: %s",
            array_id or "-", len(fold_jobs), config.array_parallelism, collect.job_id,
            config.out, config.out, _log_dir(config),
        )
    if waits(config):
        wait_for([*fold_jobs, collect], "cv sweep", POLL_S[config.cluster])
        for fold, job in zip(todo, fold_jobs):
            if not os.path.exists(fold.result_path):
                logger.error("no result in %s; see its train.log and %s", fold.out_dir, job.paths.stderr)
        print(collect.result())
    return [*fold_jobs, collect]
