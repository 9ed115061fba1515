"""Comma-separated option values (``--objectives wwmlm,span_mvfr``, ``--labels a,b``): one parser for all."""

from typing import List

__all__ = ["split_list"]


def split_list(text: str) -> List[str]:
    """The comma-separated items of ``text``, stripped; empty items (``a,,b``, a trailing comma) are skipped."""
    return [item.strip() for item in text.split(",") if item.strip()]
