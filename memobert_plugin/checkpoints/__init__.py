"""Checkpoint safety: weights-only loading with an allowlist, and what memobert builds from a checkpoint's
config."""
