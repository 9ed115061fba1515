"""Pretraining as one submitit job: every task runs fairseq-train as one rank; requeued on time-out or preemption.

Each task reads its rank, the world size and the first node's name from the scheduler's
environment (submitit's JobEnvironment: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID,
SLURM_JOB_NODELIST on Slurm) and hands them to fairseq-train explicitly, one process per rank.
fairseq 0.12's own Slurm inference is not used: with several tasks per node it calls
torch.cuda.set_device even for ``--cpu`` runs, and the local executor has no Slurm environment;
the explicit form works on both, on CPUs and GPUs. On CPU the backend is gloo with legacy_ddp
(``--cpu`` alone still picks nccl; pytorch_ddp fails on a CPU model).

A requeued job calls fairseq-train again with the same arguments; fairseq restores
``<save_dir>/checkpoint_last.pt`` with the data iterator's position, and masking is seeded by
(seed, epoch, index), so training continues with the same data order to the same final model.
Updates since the last save are recomputed: ``--save-interval-updates`` bounds that work.
"""

import logging
import os
import shlex
import sys
import zlib
from typing import List, Optional

import submitit

from memobert_plugin.cluster.config import ConfigError, PretrainConfig, Resources, option_flags, waits
from memobert_plugin.cluster.executor import POLL_S, limit_threads, log_to_stdout, make_executor, wait_for

__all__ = [
    "PretrainJob", "submit_pretrain", "pretrain_argv", "distributed_args", "job_port",
    "check_fairseq_args",
]

logger = logging.getLogger("memobert.slurm")

# ports derived from job ids stay below Linux's ephemeral range (32768-60999), where outgoing
# connections would take them
PORT_BASE, PORT_SPAN = 12000, 20000


def pretrain_argv(config: PretrainConfig, plugin_dir: str) -> List[str]:
    """fairseq-train's arguments for every rank, before the distributed ones."""
    argv = [config.data, "--user-dir", plugin_dir, "--save-dir", config.save_dir, *option_flags(config.fairseq, "fairseq")]
    if not config.resources.gpus_per_node:
        argv.append("--cpu")
    return argv + list(config.extra_args)


def job_port(job_id: str, restarts: int = 0) -> int:
    """The same on every task of a job, different between jobs sharing a node (and after a requeue)."""
    return PORT_BASE + zlib.crc32(f"{job_id}/{restarts}".encode()) % PORT_SPAN


def distributed_args(world_size: int, rank: int, local_rank: int, master: str, port: int, cpu: bool) -> List[str]:
    """The distributed part of one rank's fairseq-train arguments (none for a single process).

    Always naming the world size is what keeps N processes from training N separate models.
    """
    if world_size == 1:
        return []
    args = [
        "--distributed-world-size", str(world_size), "--distributed-rank", str(rank), "--device-id", str(local_rank),
        "--distributed-init-method", f"tcp://{master}:{port}", "--distributed-no-spawn",
        # on resume rank 0 would otherwise send the checkpoint to the others through torch.load,
        # which (torch >= 2.6, weights only) refuses the omegaconf config inside it
        "--load-checkpoint-on-all-dp-ranks",
    ]
    if cpu:
        args += ["--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp"]
    return args


def check_fairseq_args(argv: List[str]) -> None:
    """Parse with fairseq's own parser now, so that a typo fails here rather than after the queue."""
    from fairseq import options

    from memobert_plugin import register

    register()  # fairseq's --user-dir skips memobert_plugin, imported already: the tasks must be known to parse
    parser = options.get_training_parser()
    try:
        options.parse_args_and_arch(parser, input_args=argv)
    except SystemExit as exc:  # argparse has printed the reason
        raise ConfigError(f"fairseq-train rejects the arguments (reason above): {shlex.join(argv)}") from exc


class PretrainJob(submitit.helpers.Checkpointable):
    """What each task of the pretraining job runs: fairseq-train's entry point, in this process.

    Checkpointable: on the time-out or preemption signal submitit pickles this object again and
    requeues the job, which then resumes from checkpoint_last.pt.
    """

    def __init__(self, argv: List[str], save_dir: str, resources: Resources, port: Optional[int] = None):
        self.argv, self.save_dir, self.resources, self.port = list(argv), save_dir, resources, port

    def __call__(self) -> str:
        log_to_stdout()
        env = submitit.JobEnvironment()
        if env.num_tasks != self.resources.world_size:
            raise RuntimeError(f"the job has {env.num_tasks} tasks but the configuration asks for "
                               f"{self.resources.world_size} (nodes x tasks_per_node)")
        limit_threads(self.resources.cpus_per_task)
        port = self.port or job_port(env.job_id, int(os.environ.get("SLURM_RESTART_COUNT", "0")))
        # rank 0 listens on the first node; the local executor's tasks all run on this machine
        master = env.hostnames[0] if env.cluster == "slurm" else "127.0.0.1"
        argv = self.argv + distributed_args(
            env.num_tasks, env.global_rank, env.local_rank, master, port, cpu="--cpu" in self.argv,
        )
        logger.info("%s: fairseq-train %s", env, " ".join(argv))
        # the console script fairseq-train, run in this process; unpickling this job imported memobert_plugin
        # first, so fairseq's --user-dir skips it: register it here
        from fairseq_cli.train import cli_main

        from memobert_plugin import register

        register()

        sys.argv = ["fairseq-train", *argv]
        try:
            cli_main()
        except SystemExit as stop:
            # submitit requeues by raising SystemExit from its signal handler, i.e. anywhere in the
            # training step; a normal interpreter exit would then tear down gloo's busy threads and
            # can abort ("terminate called without an active exception") with an exit code that
            # is no longer the requeue code. Leave at once with the code submitit chose.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(stop.code if isinstance(stop.code, int) else 1)
        return os.path.join(self.save_dir, "checkpoint_last.pt")


def submit_pretrain(config: PretrainConfig, plugin_dir: str) -> submitit.Job:
    """Check the configuration, submit the job, say where everything goes; wait if asked."""
    res = config.resources
    if not os.path.isdir(config.data):
        raise ConfigError(f"data: {config.data} is not a directory")
    argv = pretrain_argv(config, plugin_dir)
    check_fairseq_args(argv)
    os.makedirs(config.save_dir, exist_ok=True)
    log_dir = config.log_dir or os.path.join(config.save_dir, "submitit")
    executor = make_executor(config.cluster, log_dir, res, config.name)
    job = executor.submit(PretrainJob(argv, config.save_dir, res, config.distributed_port))
    resumes = os.path.exists(os.path.join(config.save_dir, "checkpoint_last.pt"))
    logger.info(
        "submitted %s job %s: %d node(s) x %d task(s) (world size %d, %s)\n"
        "  checkpoints: %s (%s)\n  logs: %s",
        config.cluster, job.job_id, res.nodes, res.tasks, res.world_size,
        f"{res.gpus_per_node} GPU(s) per node" if res.gpus_per_node else "CPU",
        config.save_dir, "resuming from checkpoint_last.pt" if resumes else "new run",
        job.paths.stdout,
    )
    if waits(config):
        wait_for([job], f"pretraining job {job.job_id}", POLL_S[config.cluster])
        logger.info("finished: %s", job.results()[0])
    return job

