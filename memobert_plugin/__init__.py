"""memobert: MEmoBERT as a fairseq plugin (``fairseq-train --user-dir memobert_plugin``).

:func:`register` registers the plugin's tasks, criterions, optimizer, model architectures and
pretraining objectives with fairseq, the weights-only loading allowlist for fairseq
checkpoints and the check of every checkpoint fairseq loads, atomic checkpoint writes, and
fairseq-train's guards (a finished run does no update; one run per save dir). Importing the
package calls it when fairseq is already loaded, as under ``--user-dir``; the console scripts
import only what they need, so ``--help`` and table-making never pay fairseq's import. A
program that imports this package before fairseq and then uses fairseq's registries calls
``memobert_plugin.register()`` itself (importing a task, model or criterion module also
registers that one); its checkpoint saves and copies are atomic in any case, from the moment
``import fairseq`` completes.
"""

import importlib.abc
import importlib.util
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
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _AtomicCheckpointsOnFairseqImport)]
    from .atomic_checkpoints import make_checkpoint_copies_atomic
    from .checkpoint_policy import guard_fairseq_checkpoint_loading
    from .run_guards import install_run_guards
    from .safe_loading import register_safe_globals

    register_safe_globals()
    make_checkpoint_copies_atomic()
    guard_fairseq_checkpoint_loading()
    install_run_guards()
    from . import criterions, models, objectives, optim, tasks  # noqa: F401  (registration order: objectives before tasks)


class _AtomicCheckpointsOnFairseqImport(importlib.abc.MetaPathFinder):
    """Imported before fairseq, the package still makes fairseq's checkpoint saves and copies atomic: once
    ``import fairseq`` completes (registries are left to :func:`register`, which the program calls)."""

    def find_spec(self, name, path=None, target=None):
        if name != "fairseq":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)  # once; the search below goes to the other finders
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_make_atomic(module):
            exec_module(module)
            loading = sys.modules.get(f"{__name__}.atomic_checkpoints")
            if loading is not None and not hasattr(loading, "make_checkpoint_copies_atomic"):
                return  # fairseq imported by atomic_checkpoints itself: its importer (register()) patches
            from .atomic_checkpoints import make_checkpoint_copies_atomic

            make_checkpoint_copies_atomic()

        spec.loader.exec_module = exec_then_make_atomic
        return spec


if sys.modules.get("fairseq") is not None:  # None: an import blocked on purpose
    register()
elif "fairseq" not in sys.modules:
    sys.meta_path.insert(0, _AtomicCheckpointsOnFairseqImport())
