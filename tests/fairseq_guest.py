"""A session of plain fairseq work (no memobert in it): train, stop, resume from checkpoint_last.pt, restore
another run with --restore-file, validate (fairseq-validate's main) and load (load_model_ensemble_and_task),
for a tiny language_modeling or masked_lm model; what it logged, the parameters and the files it left.

``python tests/fairseq_guest.py TASK DATA ROOT`` prints the result as JSON (a process without memobert, with
the allowlist entry fairseq itself needs on this torch);
:func:`session` runs it in this process (test_fairseq_guest.py: with memobert registered, and --user-dir).
"""

import hashlib
import json
import logging
import os
import sys
from typing import Dict, List, Optional

#: tiny models of fairseq's own tasks: (task and model arguments)
TASKS = {
    "language_modeling": ["--task", "language_modeling", "--arch", "transformer_lm", "--decoder-layers", "1",
                          "--decoder-embed-dim", "16", "--decoder-ffn-embed-dim", "32", "--decoder-attention-heads", "2",
                          "--tokens-per-sample", "32"],
    "masked_lm": ["--task", "masked_lm", "--criterion", "masked_lm", "--arch", "roberta_base", "--encoder-layers", "1",
                  "--encoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2",
                  "--tokens-per-sample", "32", "--max-positions", "32"],
}
COMMON = ["--optimizer", "adam", "--lr", "1e-3", "--batch-size", "8", "--cpu", "--num-workers", "0", "--seed", "1",
          "--save-interval-updates", "2", "--log-format", "json", "--log-interval", "1"]
#: the logged numbers that depend on the computation (not on the clock)
_KEPT = ("loss", "ppl", "gnorm", "num_updates", "lr", "epoch")


class _Records(logging.Handler):
    """The JSON records fairseq's progress bars log (train_inner, train, valid)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records: List[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("{"):
            stats = json.loads(message)
            self.records.append({k: v for k, v in stats.items() if k.endswith(_KEPT)})


def _parameters_hash(state_dict) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _train(argv: List[str]) -> None:
    from fairseq import distributed_utils, options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq_cli import train

    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    distributed_utils.call_main(convert_namespace_to_omegaconf(args), train.main)


def _validate(argv: List[str]) -> None:
    from fairseq import distributed_utils, options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq_cli import validate

    args = options.parse_args_and_arch(options.get_validation_parser(), argv)
    override_args = options.parse_args_and_arch(options.get_validation_parser(), argv, suppress_defaults=True)
    distributed_utils.call_main(convert_namespace_to_omegaconf(args), validate.main, override_args=override_args)


def session(task: str, data: str, root: str, extra: Optional[List[str]] = None) -> Dict:
    """Run the session in ``root`` (``extra``: arguments added to every command, e.g. --user-dir)."""
    import torch
    from fairseq import checkpoint_utils

    extra = list(extra or [])
    if hasattr(checkpoint_utils.save_checkpoint, "best"):  # fairseq keeps the best loss here, across runs in a process
        del checkpoint_utils.save_checkpoint.best
    first, second = os.path.join(root, "first"), os.path.join(root, "restored")
    train = [data, *TASKS[task], *COMMON, *extra]
    progress = logging.getLogger("fairseq.logging.progress_bar")
    records, level, threads = _Records(), progress.level, torch.get_num_threads()
    progress.addHandler(records)
    progress.setLevel(logging.INFO)
    torch.set_num_threads(1)
    try:
        _train([*train, "--max-update", "4", "--save-dir", first])  # stops after 4 updates
        _train([*train, "--max-update", "6", "--save-dir", first])  # resumes from checkpoint_last.pt
        _train([*train, "--max-update", "6", "--save-dir", second,
                "--restore-file", os.path.join(first, "checkpoint_1_2.pt")])
        last = os.path.join(first, "checkpoint_last.pt")
        _validate([data, "--task", task, "--path", last, "--batch-size", "8", "--cpu", "--num-workers", "0",
                   "--log-format", "json", *extra])
        (model,), _, _ = checkpoint_utils.load_model_ensemble_and_task([last])
    finally:
        progress.removeHandler(records)
        progress.setLevel(level)
        torch.set_num_threads(threads)
    checkpoints = {os.path.relpath(p, root): _parameters_hash(checkpoint_utils.load_checkpoint_to_cpu(p)["model"])
                   for p in (last, os.path.join(second, "checkpoint_last.pt"))}
    return {"records": records.records, "checkpoints": checkpoints, "loaded": _parameters_hash(model.state_dict()),
            "files": sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs),
            "memobert_imported": "memobert_plugin" in sys.modules}


if __name__ == "__main__":
    import argparse

    import torch

    sys.modules["torchaudio"] = None  # see conftest.py
    # fairseq 0.12 under torch >= 2.6 (weights-only torch.load) cannot otherwise resume its own RoBERTa
    # checkpoints, whose cfg.model is an argparse.Namespace; memobert allows it (and numpy scalars) per load
    torch.serialization.add_safe_globals([argparse.Namespace])
    task_name, data_dir, out = sys.argv[1:4]
    print(json.dumps(session(task_name, data_dir, out)))
