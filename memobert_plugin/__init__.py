"""memobert: MEmoBERT as a fairseq plugin (``fairseq-train --user-dir memobert_plugin``).

:func:`register` registers the plugin's tasks, criterions, optimizer, model architectures and
pretraining objectives with fairseq, the weights-only loading allowlist for fairseq
checkpoints and the check of every checkpoint fairseq loads, atomic checkpoint writes, and
fairseq-train's guards (a finished run does no update; one run per save dir). Importing the
package calls it when fairseq is already loaded, as under ``--user-dir``; the console scripts
import only what they need, so ``--help`` and table-making never pay fairseq's import. A
program that imports this package before fairseq and then uses fairseq's registries calls
``memobert_plugin.register()`` itself (importing a task, model or criterion module also
registers that one).
"""

import logging
import sys

__all__ = ["register"]
__version__ = "0.1.0"


class _NoTensorboardNag(logging.Filter):
    """fairseq's text-to-speech task, imported with every fairseq, asks at INFO level to install tensorboardX,
    which none of our commands use (``pip install memobert[tensorboard]`` is for --tensorboard-logdir)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Please install tensorboardX")


logging.getLogger("fairseq.tasks.text_to_speech").addFilter(_NoTensorboardNag())


def register() -> None:
    """Register everything with fairseq (imports fairseq; idempotent)."""
    from .atomic_checkpoints import make_checkpoint_copies_atomic
    from .checkpoint_policy import guard_fairseq_checkpoint_loading
    from .run_guards import install_run_guards
    from .safe_loading import register_safe_globals

    register_safe_globals()
    make_checkpoint_copies_atomic()
    guard_fairseq_checkpoint_loading()
    install_run_guards()
    from . import criterions, models, objectives, optim, tasks  # noqa: F401  (registration order: objectives before tasks)


if sys.modules.get("fairseq") is not None:  # None: an import blocked on purpose
    register()
