"""memobert: MEmoBERT as a fairseq plugin (``fairseq-train --user-dir memobert_plugin``).

:func:`register` registers the plugin's tasks, criterions, optimizer, model architectures and
pretraining objectives with fairseq and installs :mod:`memobert_plugin.fairseq_patches` (each scoped
to memobert's own tasks, checkpoints and save dirs). ``--user-dir`` imports this package after
fairseq, which calls it; importing a module of the package before fairseq (a helper, a console
script's module) registers and patches nothing. fairseq's ``--user-dir`` skips a package already
imported, so a program that imported memobert before fairseq calls :func:`register` itself, as the
memobert console scripts do.
"""

import sys

from memobert_plugin.fairseq_patches import quiet_tensorboard_nag

__all__ = ["register"]
__version__ = "0.1.0"

quiet_tensorboard_nag()


def register() -> None:
    """Register everything with fairseq and install the patches (imports fairseq; idempotent)."""
    from memobert_plugin import fairseq_patches

    fairseq_patches.install()
    from memobert_plugin import criterions, models, objectives, optim, tasks  # noqa: F401  (registration order: objectives before tasks)


if sys.modules.get("fairseq") is not None:  # imported by fairseq's --user-dir (None: an import blocked on purpose)
    register()
