"""Corpus builders: a corpus in its official layout -> memobert-prepare manifests (docs/prepare.md).

``python -m memobert_plugin.prepare.corpora iemocap|msp_improv|meld|crema_d|ravdess|videos --root DIR --out DIR``;
the recipes under examples/ run them before memobert-prepare.
"""
