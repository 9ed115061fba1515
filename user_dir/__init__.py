"""A third-party memobert extension, loaded with ``fairseq-train --user-dir user_dir``.

It adds, without editing ``memobert_plugin``:

* ``span_mafc``: a pretraining objective (span-masked acoustic frame classification against
  k-means cluster ids, as in HuBERT), registered in memobert's objective registry; its
  option ``--mafc-codebook`` joins the ``memobert_pretrain`` options.
* ``memobert_valence``: a downstream task with another label set (3-class valence), built
  on ``memobert_emotion``.
* ``prosody``: a frame modality (a stream, its embedder, its extractor from audio and the ``span_mpfr``
  objective).
"""

import memobert_plugin  # noqa: F401  (registers memobert's tasks, models and objectives first)

from .prosody import PROSODY, ProsodyEmbedder, SpanMPFR  # the stream first: a task registered later gains its options too
from .span_mafc import SpanMAFC, SpanMafcConfig
from .valence_task import MemobertValenceTask, ValenceConfig

__all__ = ["SpanMAFC", "SpanMafcConfig", "MemobertValenceTask", "ValenceConfig", "PROSODY", "ProsodyEmbedder",
           "SpanMPFR"]
