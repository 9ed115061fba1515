"""``python -m memobert_plugin.prepare.corpora``: see :mod:`memobert_plugin.prepare.corpora.cli`."""

from .cli import main

main()
