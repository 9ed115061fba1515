"""memobert: MEmoBERT as a fairseq plugin (``fairseq-train --user-dir memobert_plugin``).

:func:`register` registers the plugin's tasks, criterions, optimizer, model architectures and
pretraining objectives with fairseq, the weights-only loading allowlist for fairseq
checkpoints and the check of every checkpoint fairseq loads, atomic checkpoint writes, and
fairseq-train's guards (a finished run does no update; one run per save dir). Importing the
package calls it when fairseq is already loaded, as under ``--user-dir``, and otherwise as soon as
``import fairseq`` completes (after the package module that imported it, if one did); the console
scripts import only what they need, so ``--help`` and table-making never pay fairseq's import.
"""

import importlib.abc
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


_registering = False  # register() is running: the fairseq import it triggers must not start it again


def register() -> None:
    """Register everything with fairseq (imports fairseq; idempotent)."""
    global _registering
    if _registering:
        return
    _registering = True
    try:
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterOnFairseqImport)]
        from .atomic_checkpoints import make_checkpoint_copies_atomic
        from .checkpoint_policy import guard_fairseq_checkpoint_loading
        from .run_guards import install_run_guards
        from .safe_loading import register_safe_globals

        register_safe_globals()
        make_checkpoint_copies_atomic()
        guard_fairseq_checkpoint_loading()
        install_run_guards()
        from . import criterions, models, objectives, optim, tasks  # noqa: F401  (registration order: objectives before tasks)
    finally:
        _registering = False


class _RegisterOnFairseqImport(importlib.abc.MetaPathFinder):
    """Imported before fairseq, the package still registers (``--user-dir memobert_plugin`` would find it
    already imported and register nothing): :func:`register` runs once ``import fairseq`` has completed and
    no module that register() imports (this package's, fairseq_cli's) is half-imported; one that imported
    fairseq at its top completes first."""

    def __init__(self):
        self.running = 0  # such modules whose code is running

    def find_spec(self, name, path=None, target=None):
        defers = name == "fairseq_cli" or name.startswith(("fairseq_cli.", f"{__name__}."))
        if name != "fairseq" and not defers:
            return None
        spec = next((s for s in (f.find_spec(name, path, target) for f in sys.meta_path
                                 if f is not self and hasattr(f, "find_spec")) if s is not None), None)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            self.running += defers
            try:
                exec_module(module)
            finally:
                self.running -= defers
            if self.running == 0 and sys.modules.get("fairseq") is not None:
                register()

        spec.loader.exec_module = exec_then_register
        return spec


if sys.modules.get("fairseq") is not None:  # None: an import blocked on purpose
    register()
elif "fairseq" not in sys.modules:
    sys.meta_path.insert(0, _RegisterOnFairseqImport())
