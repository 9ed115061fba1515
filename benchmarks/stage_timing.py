"""One timing of a memobert-prepare stage, run by ``benchmarks/prepare.py --what extractors`` in a child process.

It imports whichever ``memobert_plugin`` comes first on ``PYTHONPATH`` (the working tree's, or an older
commit's unpacked by ``git archive``), so only the stage interface both share is used: ``Stage(checkpoint)``,
``setup()``, ``extract(utterance)`` and, where the stage has it, ``batching(entries)``.
Prints one JSON line: the code's location, the units done (faces, or audio seconds) and the seconds taken.

Usage: ``stage_timing.py visual|acoustic CHECKPOINT_DIR THREADS MEDIA [MEDIA ...]``; the visual stage's media
are ``video.mp4:speech.wav`` pairs. The visual stage writes its own expression-network checkpoint (random
DenseNet-BC-100, seed 0) with the code under test, so either side reads a file its own code wrote.
"""

import contextlib
import json
import os
import sys
import time

sys.modules["torchaudio"] = None  # as memobert-prepare does: transformers must not import it


def _first_found(*names: str, modules):
    """``names`` from the first of ``modules`` (under memobert_plugin) the code under test has: an older
    commit's stages lie where the layout had them then."""
    import importlib

    for module in modules:
        try:
            found = importlib.import_module(f"memobert_plugin.{module}")
        except ModuleNotFoundError:
            continue
        return [getattr(found, name) for name in names]
    raise ModuleNotFoundError(f"none of memobert_plugin.{', '.join(modules)}")


def main() -> None:
    what, work, threads, media = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    import cv2
    import soundfile
    import torch

    import memobert_plugin
    from memobert_plugin.prepare import manifest

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    torch.manual_seed(0)
    if what == "visual":
        DenseNetFER, save_fer_checkpoint = _first_found("DenseNetFER", "save_fer_checkpoint",
                                                        modules=("prepare.fer.model", "prepare.fer_model"))
        (VisualStage,) = _first_found("VisualStage", modules=("prepare.stages.visual", "prepare.visual"))

        checkpoint = os.path.join(work, f"fer_{os.getpid()}.pt")
        save_fer_checkpoint(checkpoint, DenseNetFER())
        stage = VisualStage(checkpoint)
        pairs = [m.split(":") for m in media]
        entries = [manifest.Utterance(id=f"u{i}", text="x", video=v, audio=a, line=i + 2) for i, (v, a) in enumerate(pairs)]
    else:
        (AcousticStage,) = _first_found("AcousticStage", modules=("prepare.stages.acoustic", "prepare.acoustic"))

        stage = AcousticStage(os.path.join(work, "wav2vec2_base.pt"))
        entries = [manifest.Utterance(id=f"u{i}", text="x", audio=a, line=i + 2) for i, a in enumerate(media)]
    stage.setup()
    stage.extract(entries[0])  # warm-up: first-call allocations and lazy imports are not timed
    batching = getattr(stage, "batching", None)  # the old acoustic stage has none
    start = time.perf_counter()
    with batching(entries) if batching else contextlib.nullcontext():
        outputs = [stage.extract(e) for e in entries]
    seconds = time.perf_counter() - start
    if what == "visual":
        units = sum(len(o["visual"]) for o in outputs)
    else:
        units = sum(min(soundfile.info(e.audio).duration, 10.0) for e in entries)  # the stage's max_seconds
    print(json.dumps({"code": os.path.dirname(os.path.dirname(memobert_plugin.__file__)), "units": units,
                      "seconds": seconds}))


if __name__ == "__main__":
    main()
