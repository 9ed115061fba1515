"""Alias of the installed launchers (memobert_plugin.cluster): ``python -m slurm.launch`` = ``memobert-launch``.

local_cluster.sh (a one-node Slurm cluster for tests and trials) lives here. See docs/cluster.md.
"""
