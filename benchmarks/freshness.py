"""What checking content (not size and mtime) costs: the training-start check and memobert-prepare's
media identities, for the working tree and a baseline commit, on the same files in the same run.

    python benchmarks/freshness.py [--mb 512] [--files 200] [--baseline main]

Writes a data dir with a feature store of ``--mb`` MB (and its dataset.json checksums) and ``--files``
recordings of ``--mb`` MB in all, then in a child process per side (``PYTHONPATH`` = the working tree,
or the baseline unpacked by ``git archive``) times: the first training start (every file hashed), a later
start (the cache consulted), and the same for the media identities of a prepare run. Prints one line per
measurement with both sides and their ratio.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _child(data_dir: str, media_dir: str) -> None:
    """Run under the side's PYTHONPATH: print the timings as one JSON line."""
    from memobert_plugin import files
    from memobert_plugin.data.consistency import check_split_files

    media = sorted(os.path.join(media_dir, name) for name in os.listdir(media_dir))
    if hasattr(files, "DigestCache"):  # the working tree: content identities, remembered in a cache file
        cache_path = os.path.join(media_dir, os.pardir, f"digests-{os.getpid()}.json")

        def identities():
            cache = files.DigestCache(cache_path)
            out = [files.file_identity(path, cache) for path in media]
            cache.save()
            return out
    else:  # the baseline: size and modification time
        def identities():
            return [files.file_identity(path) for path in media]

    timings = {}
    for run in ("first", "later"):
        start = time.perf_counter()
        check_split_files(data_dir, "train")
        timings[f"training start ({run})"] = time.perf_counter() - start
        start = time.perf_counter()
        identities()
        timings[f"prepare media identities ({run})"] = time.perf_counter() - start
    print(json.dumps(timings))


def _write_data(root: str, mb: int, count: int) -> tuple:
    from memobert_plugin.files import sha256_file

    rng = np.random.default_rng(0)
    data_dir, media_dir = os.path.join(root, "data"), os.path.join(root, "media")
    os.makedirs(data_dir)
    os.makedirs(media_dir)
    frames = mb * (1 << 20) // (768 * 2)
    np.save(os.path.join(data_dir, "train.acoustic.npy"), rng.standard_normal((frames, 768), dtype=np.float32)
            .astype(np.float16))
    with open(os.path.join(data_dir, "dict.txt"), "w") as handle:
        handle.write("".join(f"w{i} 1\n" for i in range(1000)))
    names = ("dict.txt", "train.acoustic.npy")
    with open(os.path.join(data_dir, "dataset.json"), "w") as handle:
        json.dump({"checksums": {n: sha256_file(os.path.join(data_dir, n)) for n in names}}, handle)
    size = mb * (1 << 20) // count
    for i in range(count):
        with open(os.path.join(media_dir, f"u{i:05d}.wav"), "wb") as handle:
            handle.write(rng.bytes(size))
    return data_dir, media_dir


def _side(tree: str, data_dir: str, media_dir: str) -> dict:
    """One side's timings (on its own copy of the data dir: each side writes its own cache)."""
    env = dict(os.environ, PYTHONPATH=tree)
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", data_dir, media_dir],
                         env=env, cwd=tree, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=512, help="size of the feature store, and of the recordings in all")
    parser.add_argument("--files", type=int, default=200, help="number of recordings")
    parser.add_argument("--baseline", default="main", help="git commit to compare with")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    with tempfile.TemporaryDirectory() as root:
        baseline = os.path.join(root, "baseline")
        os.makedirs(baseline)
        archive = subprocess.run(["git", "-C", REPO, "archive", args.baseline], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", baseline], input=archive, check=True)
        data_dir, media_dir = _write_data(root, args.mb, args.files)
        subprocess.run(["cp", "-a", data_dir, data_dir + "-baseline"], check=True)
        time.sleep(2.5)  # past the racy-write margin: files this fresh are hashed on every start
        sides = {"baseline": _side(baseline, data_dir + "-baseline", media_dir),
                 "working tree": _side(REPO, data_dir, media_dir)}
    print(f"{args.mb} MB feature store; {args.files} recordings, {args.mb} MB in all; baseline {args.baseline}")
    for name in sides["baseline"]:
        old, new = sides["baseline"][name], sides["working tree"][name]
        print(f"{name:38s} baseline {old * 1000:9.1f} ms   working tree {new * 1000:9.1f} ms   ratio {new / old:6.2f}")


if __name__ == "__main__":
    main()
