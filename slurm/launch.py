"""``python -m slurm.launch``: the same as ``memobert-launch`` (memobert_plugin/cluster/launch.py)."""

from memobert_plugin.cluster.launch import main

if __name__ == "__main__":
    main()
