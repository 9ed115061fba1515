"""``python -m memobert_plugin.prepare.corpora``: see :mod:`memobert_plugin.prepare.corpora.cli`."""

from memobert_plugin.prepare.corpora.cli import main

main()
