"""Cluster launchers for memobert: pretraining, cross-validation job arrays and result collection.

    python -m slurm.launch pretrain [--config FILE] [--cluster slurm|local] [key=value ...]
    python -m slurm.launch cv       [--config FILE] [--cluster slurm|local] [key=value ...]
    python -m slurm.launch collect  [--config FILE] [--cluster slurm|local] [key=value ...]

Jobs go through submitit, so ``--cluster local`` runs the same command on this machine.
See docs/cluster.md.
"""
