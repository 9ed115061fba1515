"""Cluster launchers for memobert: pretraining, cross-validation job arrays and result collection.

The entry point and its usage: slurm/launch.py (``python -m slurm.launch --help``).
Jobs go through submitit, so ``--cluster local`` runs the same command on this machine.
See docs/cluster.md.
"""
