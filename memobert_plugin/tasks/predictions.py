"""Per-utterance predictions of an evaluation (``--predictions-path``), for error analysis and significance tests.

The criterion hands each evaluated batch's class scores to the task; the rows are kept
in memory, by utterance, and the file is rewritten, atomically, whenever fairseq reduces
metrics (once at the end of ``fairseq-validate``'s pass; after each batch of fairseq-train's
validations, each of which starts afresh): it holds the last pass's predictions. Rank r > 0 of a distributed run writes
``PATH.rank<r>``, so ranks never share a file. fairseq evens out the ranks' shares of
batches with stand-in batches that its metrics ignore: only utterances of the evaluated
subsets are recorded, each once per rank, but an utterance may then stand in two ranks'
files (with the same prediction): join them by id.
"""

from typing import AbstractSet, Dict, Sequence

import torch

from memobert_plugin.predictions_file import prediction_columns, prediction_row
from memobert_plugin.prepare.report import write_tsv

__all__ = ["PredictionRecorder", "rank_path"]


def rank_path(path: str) -> str:
    """``path`` on rank 0 (or without torch.distributed), ``path.rank<r>`` on rank r."""
    rank = torch.distributed.get_rank() if torch.distributed.is_available() and torch.distributed.is_initialized() else 0
    return path if rank == 0 else f"{path}.rank{rank}"


class PredictionRecorder:
    def __init__(self, path: str, class_names: Sequence[str], utterance_ids: Sequence[str], evaluated: AbstractSet[int]):
        """``utterance_ids``: per corpus row; ``evaluated``: the corpus rows of the subsets that are evaluated."""
        self.path, self.class_names, self.utterance_ids, self.evaluated = path, list(class_names), utterance_ids, evaluated
        self.rows: Dict[int, list] = {}  # by corpus row: repeated batches are kept once, later passes replace
        self.pending = False

    def record(self, rows: torch.Tensor, targets: torch.Tensor, logits: torch.Tensor) -> None:
        """``rows``: corpus rows of the batch (the collated ``id``); ``logits``: ``[batch, classes]``."""
        probs = torch.softmax(logits.float(), dim=-1)
        predicted = logits.argmax(-1)  # as the criterion's confusion matrix counts it
        for row, gold, guess, p in zip(rows.tolist(), targets.tolist(), predicted.tolist(), probs.tolist()):
            if row not in self.evaluated:
                continue
            self.rows[row] = prediction_row(self.utterance_ids[row], self.class_names[gold], self.class_names[guess], p)
            self.pending = True

    def start_pass(self) -> None:
        """Forget the previous pass's rows (a rank may be given other batches this time)."""
        self.rows, self.pending = {}, False

    def flush(self) -> None:
        """Write the recorded rows, if any were recorded since the last write."""
        if self.pending:
            write_tsv(rank_path(self.path), prediction_columns(self.class_names), self.rows.values())
            self.pending = False
