"""memobert: MEmoBERT as a fairseq plugin (``fairseq-train --user-dir memobert_plugin``).

Importing the package registers its tasks, criterions, optimizer, model architectures and
pretraining objectives with fairseq, the weights-only loading allowlist for
fairseq checkpoints and the check of every checkpoint fairseq loads, atomic checkpoint
writes, and fairseq-train's guards (a finished run does no update; one run per save dir).
"""

from .atomic_checkpoints import make_checkpoint_copies_atomic
from .checkpoint_policy import guard_fairseq_checkpoint_loading
from .run_guards import install_run_guards
from .safe_loading import register_safe_globals

register_safe_globals()
make_checkpoint_copies_atomic()
guard_fairseq_checkpoint_loading()
install_run_guards()

from . import criterions, models, objectives, optim, tasks  # noqa: E402  (registration order: objectives before tasks)

__all__ = ["criterions", "models", "objectives", "optim", "tasks", "register_safe_globals", "make_checkpoint_copies_atomic"]
__version__ = "0.1.0"
