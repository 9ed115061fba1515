"""memobert: MEmoBERT (multimodal emotion BERT with prompting) as a fairseq plugin."""

import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))

with open(os.path.join(HERE, "README.md"), encoding="utf-8") as handle:
    LONG_DESCRIPTION = handle.read()

setup(
    name="memobert",
    version="0.1.0",
    description="MEmoBERT: multimodal (text, face, voice) BERT pretraining and prompt-based emotion recognition on fairseq",
    long_description=LONG_DESCRIPTION,
    long_description_content_type="text/markdown",
    packages=find_packages(include=["memobert_plugin", "memobert_plugin.*"]),
    package_data={"memobert_plugin.cluster": ["config/*.yaml"], "memobert_plugin.inference": ["serve_page.html"]},
    # ve-fairseq (a build of fairseq 0.12 that imports on Python 3.11+; the official 0.12.2 does not) ships
    # Linux x86_64 cp311/cp312 wheels only; tested on CPython 3.11
    python_requires=">=3.11,<3.13",
    install_requires=[
        # 2.4: torch.serialization.add_safe_globals (weights-only checkpoint loading); tested on 2.13
        "torch>=2.4,<2.14",
        "ve-fairseq==0.12.3",
        "numpy",
        "tqdm",
        "omegaconf",
        "hydra-core",
        "sentencepiece",
        "soundfile",
        "safetensors",
        "matplotlib",
    ],
    extras_require={
        # reference implementations, used only to check ours in the tests
        "test": ["pytest", "transformers", "scikit-learn", "scikit-image", "submitit", "selenium"],
        # the cluster launchers (memobert-launch, memobert_plugin.cluster), imported only there
        "slurm": ["submitit"],
        # data preparation's feature extractors (memobert-prepare acoustic/visual); OpenCV 5 dropped the Haar cascades;
        # silero-vad and opensmile ship their models (voice activity; eGeMAPS features without a wav2vec 2.0 checkpoint)
        "extract": ["opencv-python-headless>=4.8,<5", "av", "scipy", "transformers", "silero-vad", "opensmile"],
        # fairseq-train --tensorboard-logdir (fairseq falls back to tensorboardX when the tensorboard package is absent)
        "tensorboard": ["tensorboardX"],
    },
    entry_points={
        "console_scripts": [
            "memobert-demo-corpus = memobert_plugin.prepare.demo_corpus:main",
            "memobert-prepare = memobert_plugin.prepare.cli:main",
            "memobert-train-fer = memobert_plugin.prepare.fer.train:main",
            "memobert-cv = memobert_plugin.evaluation.cli:main",
            "memobert-predict = memobert_plugin.inference.cli:main",
            "memobert-serve = memobert_plugin.inference.serve:main",
            "memobert-export-hf = memobert_plugin.inference.export_hf:main",
            "memobert-bundle = memobert_plugin.inference.bundle:main",
            "memobert-launch = memobert_plugin.cluster.launch:main",
        ],
    },
)
