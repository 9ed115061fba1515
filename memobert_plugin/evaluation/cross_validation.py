"""Cross-validation jobs: one fairseq-train + fairseq-validate per corpus x setting x fraction x seed x fold.

Each job trains on its fold's training speakers, keeps the checkpoint best on the
validation speaker (``--best-checkpoint-metric uar``), then scores the held-out test
speaker with ``fairseq-validate --valid-subset test`` and writes ``result.json`` (WA, UAR,
macro/weighted F1, per-class figures, the confusion matrix and the fold scheme) and ``test_predictions.tsv``
(one row per test utterance). A job whose ``result.json`` exists is done; an interrupted
one resumes from its ``checkpoint_last.pt`` (fairseq's own resumption), so rerunning a sweep
is safe. Both commands' output streams into the job's ``train.log`` as it is printed.

Fold 0 is the final model (``memobert-cv run --train-final``): every labelled speaker but
the validation one trains (see :func:`memobert_plugin.data.folds.fold_split`); it keeps its
checkpoints and writes ``final.json`` with the validation speaker's scores instead.
"""

import ctypes
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import memobert_plugin

from memobert_plugin.class_metrics import classification_report
from memobert_plugin.data.folds import LABELLED_SPLIT, fold_split, resolve_scheme, stratified_subset
from memobert_plugin.data.utterance_meta import UtteranceMeta, read_meta
from memobert_plugin.output_lock import output_lock
from memobert_plugin.predictions_file import read_predictions
from memobert_plugin.files import atomic_open

__all__ = ["SETTINGS", "FoldJob", "run_fold_job", "plan_jobs", "parse_validate_output", "parse_valid_line", "PLUGIN_DIR",
           "FoldFailedError", "requested_cv_scheme"]

logger = logging.getLogger(__name__)

PLUGIN_DIR = os.path.dirname(os.path.abspath(memobert_plugin.__file__))

#: share of a warmup_linear schedule's updates spent warming up (UNITER's 10%)
LR_WARMUP_SHARE = 0.1

#: the paper's four settings: (initialisation, head)
SETTINGS: Dict[str, tuple] = {
    "direct": ("none", "finetune"),
    "bert_direct": ("bert", "finetune"),
    "pretrain_finetune": ("memobert", "finetune"),
    "pretrain_prompt": ("memobert", "prompt"),
}


@dataclass
class FoldJob:
    """Everything one fold run needs; ``out_dir`` is its own directory."""

    corpus: str
    data: str
    setting: str
    fold: int
    seed: int
    out_dir: str
    train_fraction: float = 1.0
    pretrained_label: str = ""  # names the pretrained checkpoint (Table 3 ablations get one row each)
    init_path: str = ""  # --bert-init dir or --memobert-init checkpoint, by setting
    arch: str = "memobert_base"
    lr: Optional[float] = None  # None: the paper's 5e-5 on full data, 3e-5 on a fraction
    max_epoch: int = 15
    batch_size: int = 32
    same_subset_for_all_seeds: bool = False  # False: each seed draws its own low-resource subset
    lr_schedule: str = "constant"  # or "warmup_linear": LR_WARMUP_SHARE of the updates warm up, then linear decay to 0
    decay_norm_and_bias: bool = False  # weight decay on biases and LayerNorm too (BERT and the authors: no)
    prompt_loss: str = "vocabulary"  # the memobert_emotion criterion's --prompt-loss (prompt settings)
    extra_train_args: List[str] = field(default_factory=list)
    keep_checkpoints: bool = False

    @property
    def row_label(self) -> str:
        return f"{self.setting} ({self.pretrained_label})" if self.pretrained_label else self.setting

    @property
    def final(self) -> bool:
        return self.fold == 0

    @property
    def result_path(self) -> str:
        return os.path.join(self.out_dir, "final.json" if self.final else "result.json")

    @property
    def evaluated_subset(self) -> str:
        return "valid" if self.final else "test"

    @property
    def predictions_path(self) -> str:
        return os.path.join(self.out_dir, f"{self.evaluated_subset}_predictions.tsv")

    def describe(self) -> str:
        fold = "final model" if self.final else f"fold {self.fold}"
        return f"{self.corpus} {self.row_label} frac {self.train_fraction:g} seed {self.seed} {fold}"

    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 5e-5 if self.train_fraction >= 1.0 else 3e-5

    @property
    def subset_seed(self) -> int:
        """Seed of the low-resource training subset: the run's own, or 1 for every seed."""
        return 1 if self.same_subset_for_all_seeds else self.seed

    def task_args(self) -> List[str]:
        init, head = SETTINGS[self.setting]
        args = [self.data, "--user-dir", PLUGIN_DIR, "--task", "memobert_emotion", "--fold", str(self.fold),
                "--emotion-head", head, "--train-fraction", str(self.train_fraction),
                "--train-fraction-seed", str(self.subset_seed)]
        if init != "none":
            if not self.init_path:
                raise ValueError(f"setting {self.setting} needs a {'BERT directory' if init == 'bert' else 'pretrained checkpoint'}")
            args += ["--bert-init" if init == "bert" else "--memobert-init", self.init_path]
        return args

    def meta(self) -> List[UtteranceMeta]:
        """The labelled corpus's rows (all.meta.tsv)."""
        return read_meta(os.path.join(self.data, f"{LABELLED_SPLIT}.meta.tsv"))

    def cv_scheme(self) -> str:
        """How the task makes the folds of this corpus: session, speaker or fixed (its --cv-scheme, auto
        unless the extra fairseq-train arguments give one)."""
        return resolve_scheme(self.meta(), requested_cv_scheme(self.extra_train_args))

    def train_updates(self) -> int:
        """Updates of the whole run: the fold's (subsampled) training set in batches, times the epochs."""
        meta = self.meta()
        train = fold_split(meta, self.fold, requested_cv_scheme(self.extra_train_args)).train
        if self.train_fraction < 1:
            train = stratified_subset(train, [row.label for row in meta], self.train_fraction, self.subset_seed)
        return -(-len(train) // self.batch_size) * self.max_epoch

    def schedule_args(self) -> List[str]:
        if self.lr_schedule == "constant" or self.zero_shot:  # a zero-shot job makes no update to schedule
            return ["--lr-scheduler", "fixed"]
        if self.lr_schedule != "warmup_linear":
            raise ValueError(f"lr_schedule must be 'constant' or 'warmup_linear', got {self.lr_schedule!r}")
        total = self.train_updates()
        return ["--lr-scheduler", "polynomial_decay", "--total-num-update", str(total),
                "--warmup-updates", str(round(LR_WARMUP_SHARE * total))]

    def train_command(self) -> List[str]:
        prompt = SETTINGS[self.setting][1] == "prompt"
        return [
            _entry_point("fairseq-train"), *self.task_args(),
            "--arch", self.arch, "--criterion", "memobert_emotion", "--seed", str(self.seed),
            *(["--prompt-loss", self.prompt_loss] if prompt else []),
            "--optimizer", "memobert_adam", "--adam-betas", "(0.9,0.98)", "--weight-decay", "0.01", "--clip-norm", "5",
            *(["--decay-norm-and-bias"] if self.decay_norm_and_bias else []),
            "--lr", str(self.learning_rate()), *self.schedule_args(),
            "--max-epoch", str(self.max_epoch), "--batch-size", str(self.batch_size),
            "--save-dir", os.path.join(self.out_dir, "checkpoints"), "--no-epoch-checkpoints",
            "--best-checkpoint-metric", "uar", "--maximize-best-checkpoint-metric",
            "--log-format", "json", "--log-interval", "50", "--num-workers", "0",
            *self.extra_train_args,
        ]

    @property
    def zero_shot(self) -> bool:
        """No labels: the initialisation is tested as it is (prompt settings only)."""
        return self.train_fraction == 0

    def untrained_command(self) -> List[str]:
        """Writes the untrained checkpoint_best.pt that a zero-shot fold tests (same arguments as training)."""
        return [sys.executable, "-m", "memobert_plugin.evaluation.untrained_checkpoint", *self.train_command()[1:]]

    def validate_command(self) -> List[str]:
        return [
            _entry_point("fairseq-validate"), self.data, "--user-dir", PLUGIN_DIR, "--task", "memobert_emotion",
            "--path", os.path.join(self.out_dir, "checkpoints", "checkpoint_best.pt"),
            "--valid-subset", self.evaluated_subset, "--predictions-path", self.predictions_path,
            "--batch-size", str(self.batch_size), "--log-format", "json", "--num-workers", "0",
        ]


def requested_cv_scheme(train_args: Sequence[str]) -> str:
    """The ``--cv-scheme`` among extra fairseq-train arguments (``--cv-scheme X`` or ``--cv-scheme=X``), else auto."""
    for k, arg in enumerate(train_args):
        if arg == "--cv-scheme" and k + 1 < len(train_args):
            return train_args[k + 1]
        if arg.startswith("--cv-scheme="):
            return arg.split("=", 1)[1]
    return "auto"


def _entry_point(name: str) -> str:
    """The console script next to this interpreter (so a venv's fairseq is used even if not on PATH)."""
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    return candidate if os.path.exists(candidate) else name


def _summary(line: str, subset: str) -> Optional[Dict]:
    """The metrics (prefix dropped) and epoch, if any, of a ``--log-format json`` summary line for ``subset``."""
    marker = f"| {subset} | "
    if marker not in line:
        return None
    payload = json.loads(line.split(marker, 1)[1])
    prefix = f"{subset}_"
    # fairseq prints numbers as strings ("0.4375"), the confusion matrix as a list
    metrics = {k[len(prefix):]: float(v) if isinstance(v, str) else v for k, v in payload.items() if k.startswith(prefix)}
    return {**metrics, "epoch": payload["epoch"]} if "epoch" in payload else metrics


def parse_validate_output(text: str, subset: str = "test") -> Dict:
    """The metrics of fairseq-validate's summary line for ``subset`` (numbers, and the confusion matrix)."""
    for line in reversed(text.splitlines()):
        metrics = _summary(line, subset)
        if metrics is not None:
            return metrics
    raise ValueError(f"no '{subset}' summary in fairseq-validate's output:\n{text[-2000:]}")


def parse_valid_line(line: str) -> Optional[Dict]:
    """fairseq-train's end-of-epoch validation summary (``epoch``, ``uar``, ...) if ``line`` is one."""
    return _summary(line, "valid")


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _dies_with(parent_pid: int):
    """A ``preexec_fn`` (Linux) that has the child killed when ``parent_pid`` dies, even by SIGKILL:
    a killed sweep then leaves no fairseq-train writing into the fold directory that its rerun resumes."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class FoldFailedError(RuntimeError):
    """A fold's fairseq-train or fairseq-validate exited with an error."""


def _run(command: Sequence[str], log_path: str, on_line: Optional[Callable[[str], None]] = None) -> str:
    """Run ``command``, appending its output to ``log_path`` line by line as it is printed (``tail -f``
    shows it; a killed sweep keeps it); ``on_line`` sees each line. Returns the whole output."""
    logger.debug("running: %s", " ".join(shlex.quote(c) for c in command))
    lines: List[str] = []
    with open(log_path, "a", encoding="utf-8") as log:
        log.write("$ " + " ".join(shlex.quote(c) for c in command) + "\n")
        log.flush()
        preexec = _dies_with(os.getpid()) if sys.platform.startswith("linux") else None
        env = dict(os.environ, PYTHONUNBUFFERED="1")  # python block-buffers a pipe: flush each line
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                              env=env, preexec_fn=preexec) as proc:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                lines.append(line)
                if on_line is not None:
                    on_line(line)
    output = "".join(lines)
    if proc.returncode != 0:
        raise FoldFailedError(f"{command[0]} failed (exit {proc.returncode}); see {log_path}:\n{output[-3000:]}")
    return output


#: FoldJob fields that do not change a fold's result
_NOT_RESULT_FIELDS = ("out_dir", "keep_checkpoints")


def _settings(record: Dict) -> Dict:
    return {k: v for k, v in record.items() if k in FoldJob.__dataclass_fields__ and k not in _NOT_RESULT_FIELDS}


def _check_same_job(job: FoldJob, path: str, record: Dict) -> None:
    """A fold directory belongs to one set of options: refuse to reuse its result or resume its
    checkpoints for another (e.g. a rerun with a different --pretrained checkpoint or --lr).
    ``record`` is ``path``'s parsed content."""
    recorded = _settings(record)
    wanted = _settings(json.loads(json.dumps(asdict(job))))  # through JSON: tuples become lists
    differ = sorted(k for k in set(recorded) | set(wanted) if recorded.get(k) != wanted.get(k))
    if differ:
        changes = ", ".join(f"{k}: {recorded.get(k)!r} there, {wanted.get(k)!r} now" for k in differ)
        raise ValueError(f"{path} was made with other options ({changes}); use another --out, or delete "
                         f"{job.out_dir} to redo this fold")


def _read_json(path: str) -> Dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _write_json(path: str, record: Dict) -> None:
    with atomic_open(path) as handle:
        json.dump(record, handle, indent=1)


def run_fold_job(job: FoldJob, on_validation: Optional[Callable[[Dict], None]] = None) -> Dict:
    """Train, select on validation, test; write and return the result (or the existing one).

    ``on_validation`` sees each end-of-epoch validation summary of the training (``epoch``, ``uar``, ...).
    The fold's directory is locked meanwhile: a second sweep on it stops instead of training beside this one.
    """
    with output_lock(job.out_dir, "this cross-validation fold"):
        return _run_fold_job(job, on_validation)


def _run_fold_job(job: FoldJob, on_validation: Optional[Callable[[Dict], None]]) -> Dict:
    spec_path = os.path.join(job.out_dir, "job.json")
    existing: Dict[str, Dict] = {}  # each file read once: the result is checked, then returned
    for path in (job.result_path, spec_path):
        if os.path.exists(path):
            existing[path] = _read_json(path)
            _check_same_job(job, path, existing[path])
    if job.result_path in existing:
        return existing[job.result_path]
    os.makedirs(job.out_dir, exist_ok=True)
    _write_json(spec_path, asdict(job))
    log_path = os.path.join(job.out_dir, "train.log")

    def watch(line: str) -> None:
        summary = parse_valid_line(line)
        if summary is not None and on_validation is not None:
            on_validation(summary)

    _run(job.untrained_command() if job.zero_shot else job.train_command(), log_path, watch)
    metrics = parse_validate_output(_run(job.validate_command(), log_path), job.evaluated_subset)
    classes, _ = read_predictions(job.predictions_path)
    confusion = metrics.pop("confusion")
    scores = {**metrics, **classification_report(confusion, classes)}  # exact figures, not the log's rounded ones
    result = {**asdict(job), "row": job.row_label, "cv_scheme": job.cv_scheme(), job.evaluated_subset: scores}
    _write_json(job.result_path, result)
    if not job.keep_checkpoints and not job.final:
        for name in ("checkpoint_best.pt", "checkpoint_last.pt"):
            path = os.path.join(job.out_dir, "checkpoints", name)
            if os.path.exists(path):
                os.remove(path)
    return result


def plan_jobs(
    out_dir: str,
    corpora: Dict[str, str],
    settings: Sequence[str],
    folds: Dict[str, Sequence[int]],
    seeds: Sequence[int],
    fractions: Sequence[float] = (1.0,),
    pretrained: Optional[Dict[str, str]] = None,
    bert_init: str = "",
    train_final: bool = False,
    **job_options,
) -> List[FoldJob]:
    """Every fold job of a sweep. ``pretrained`` maps a label to a checkpoint: each label gets
    its own pretrain_* rows (one checkpoint: the label is omitted). ``train_final`` adds, per
    corpus, row and seed, a final model on all speakers (fold 0, under ``final/``)."""
    pretrained = pretrained or {}
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise ValueError(f"unknown settings {unknown}; choose from {sorted(SETTINGS)}")
    jobs = []
    for corpus, data in corpora.items():
        for setting in settings:
            init = SETTINGS[setting][0]
            if init == "memobert":
                if not pretrained:
                    raise ValueError(f"setting {setting} needs --pretrained CHECKPOINT")
                inits = [(label if len(pretrained) > 1 else "", path) for label, path in pretrained.items()]
            elif init == "bert":
                if not bert_init:
                    raise ValueError(f"setting {setting} needs --bert-init DIR")
                inits = [("", bert_init)]
            else:
                inits = [("", "")]
            zero_shot_skipped = SETTINGS[setting][1] != "prompt" and 0 in fractions
            if zero_shot_skipped:
                logger.info("%s: no fraction 0 (zero-shot) folds, its new classifier needs labels", setting)
            for label, init_path in inits:
                row_dir = os.path.join(out_dir, corpus, setting + (f"-{label}" if label else ""))
                runs = [(fraction, seed, fold, os.path.join(row_dir, f"frac{fraction:g}", f"seed{seed}", f"fold{fold}"))
                        for fraction in fractions if not (fraction == 0 and zero_shot_skipped)
                        for seed in seeds for fold in folds[corpus]]
                if train_final:
                    runs += [(1.0, seed, 0, os.path.join(row_dir, "final", f"seed{seed}")) for seed in seeds]
                jobs += [FoldJob(corpus=corpus, data=data, setting=setting, fold=fold, seed=seed, out_dir=run_dir,
                                 train_fraction=fraction, pretrained_label=label, init_path=init_path, **job_options)
                         for fraction, seed, fold, run_dir in runs]
    return jobs
