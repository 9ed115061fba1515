"""Fit the k-means codebook of SpanMAFC on a split's speech features (memory-mapped, subsampled).

    python -m user_dir.fit_codebook DATA_DIR --split train --clusters 50 --out DATA_DIR/acoustic_km50.npy
"""

import argparse

import numpy as np

from memobert_plugin.data.feature_store import FeatureStore

__all__ = ["fit_codebook"]


def fit_codebook(frames: np.ndarray, clusters: int, iterations: int = 25, seed: int = 0) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding."""
    rng = np.random.default_rng(seed)
    centroids = frames[rng.integers(len(frames))][None]
    dist = ((frames - centroids[0]) ** 2).sum(1)
    for _ in range(1, clusters):
        chosen = frames[rng.choice(len(frames), p=dist / dist.sum())]
        centroids = np.vstack([centroids, chosen])
        dist = np.minimum(dist, ((frames - chosen) ** 2).sum(1))
    for _ in range(iterations):
        # squared distances without a [frames, clusters, dim] temporary
        assign = ((centroids ** 2).sum(1)[None] - 2 * frames @ centroids.T).argmin(1)
        for k in range(clusters):
            members = frames[assign == k]
            if len(members):
                centroids[k] = members.mean(0)
    return centroids.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data")
    parser.add_argument("--split", default="train")
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--max-frames", type=int, default=20000, help="subsample this many frames")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    store = FeatureStore(args.data, args.split, "acoustic")
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(store.frames), size=min(args.max_frames, len(store.frames)), replace=False))
    np.save(args.out, fit_codebook(np.asarray(store.frames[rows], dtype=np.float32), args.clusters))
    print(f"{args.clusters} centroids of {len(rows)} frames -> {args.out}")


if __name__ == "__main__":
    main()
