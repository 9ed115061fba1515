"""Two gloo ranks on CPU train what one process with --update-freq 2 trains (issue 6, item 3).

Each rank is its own ``fairseq-train --user-dir memobert_plugin`` process with the distributed
flags the launcher gives every rank (memobert_plugin.cluster.pretrain.distributed_args). With dropout off, the
parameters after N updates agree to float tolerance, and the validation WA/UAR, counted over
both ranks' shares of the validation set, equal the single process's exactly. Pretraining is
checked too: there each batch trains one objective, so a rank's batch leaves other heads (and
a modality's mask vector) unused, which must not make the ranks' optimizer steps differ.
"""

import os
import socket
import subprocess

import pytest
import torch

from conftest import BIN, PLUGIN_DIR, json_logs, run_cli
from memobert_plugin.checkpoints.safe_loading import load_checkpoint_weights_only
from memobert_plugin.cluster.pretrain import distributed_args

FAIRSEQ_TRAIN = os.path.join(BIN, "fairseq-train")
# one thread per process: two ranks share this machine's cores
ENV = {"OMP_NUM_THREADS": "1"}

COMMON = [
    "--user-dir", PLUGIN_DIR, "--arch", "memobert_tiny", "--dropout", "0", "--attention-dropout", "0",
    "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler", "fixed", "--clip-norm", "5", "--seed", "3",
    "--cpu", "--num-workers", "0", "--no-epoch-checkpoints", "--log-format", "json", "--log-interval", "1",
]
TASKS = {
    # 12 updates of 2 x 8 = one epoch of fold 1's 192 training utterances; 18 updates (one and a half
    # epochs) validate at updates 9, 12 (the end of epoch 1) and 18
    "emotion": ["--task", "memobert_emotion", "--criterion", "memobert_emotion", "--emotion-head", "finetune",
                "--fold", "1", "--batch-size", "8", "--max-update", "18", "--validate-interval-updates", "9",
                "--best-checkpoint-metric", "uar", "--maximize-best-checkpoint-metric"],
    "pretrain": ["--task", "memobert_pretrain", "--criterion", "memobert_pretrain", "--batch-size", "16",
                 "--max-update", "12", "--validate-interval-updates", "6"],
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train_two_ranks(data: str, task_args: list, save_dir: str) -> str:
    port = _free_port()
    procs = [
        subprocess.Popen(
            [FAIRSEQ_TRAIN, data, *COMMON, *task_args, "--save-dir", save_dir,
             *distributed_args(2, rank, rank, "127.0.0.1", port, cpu=True)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ, **ENV),
        )
        for rank in (0, 1)
    ]
    outputs = [proc.communicate(timeout=600)[0] for proc in procs]
    for rank, (proc, out) in enumerate(zip(procs, outputs)):
        assert proc.returncode == 0, f"rank {rank} exited {proc.returncode}:\n{out[-4000:]}"
    return outputs[0]


def _parameters(save_dir: str) -> dict:
    return load_checkpoint_weights_only(os.path.join(save_dir, "checkpoint_last.pt"))["model"]


@pytest.mark.parametrize("task", ["emotion", "pretrain"])
def test_two_gloo_ranks_equal_one_process_with_update_freq_2(demo_corpus, tmp_path, task):
    data = demo_corpus.emotion_data if task == "emotion" else demo_corpus.pretrain_data
    # the emotion runs also write the last validation's per-utterance predictions (one file per rank)
    predictions = {run: ["--predictions-path", str(tmp_path / f"{run}.tsv")] if task == "emotion" else []
                   for run in ("single", "ranks")}
    single = run_cli([FAIRSEQ_TRAIN, data, *COMMON, *TASKS[task], "--update-freq", "2", *predictions["single"],
                      "--save-dir", str(tmp_path / "single")], env=ENV).stdout
    ranked = _train_two_ranks(data, TASKS[task] + predictions["ranks"], str(tmp_path / "ranks"))

    assert "training on 2 devices" in ranked  # one model on two ranks, not two models
    one, two = _parameters(str(tmp_path / "single")), _parameters(str(tmp_path / "ranks"))
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5, msg=name)

    single_valid, ranked_valid = json_logs(single, "valid"), json_logs(ranked, "valid")
    assert [v["valid_num_updates"] for v in single_valid] == [v["valid_num_updates"] for v in ranked_valid]
    assert len(single_valid) >= 2
    if task == "emotion":
        for a, b in zip(single_valid, ranked_valid):
            for metric in ("valid_wa", "valid_uar", "valid_macro_f1", "valid_weighted_f1", "valid_confusion"):
                assert b[metric] == a[metric], metric
        # columns: id, gold, predicted, p_<class>..., problems (empty where the row was predicted)
        rows = {run: [line.split("\t") for path in paths for line in open(path).read().splitlines()[1:]]
                for run, paths in (("single", [tmp_path / "single.tsv"]),
                                   ("ranks", [tmp_path / "ranks.tsv", tmp_path / "ranks.tsv.rank1"]))}
        # fairseq evens out the ranks' batches by evaluating a batch twice (counted once in the metrics)
        single_ids = [r[0] for r in rows["single"]]
        assert len(single_ids) == len(set(single_ids)) > 0 and {r[0] for r in rows["ranks"]} == set(single_ids)
        ranked = {}
        for row in rows["ranks"]:
            ranked.setdefault(row[0], []).append([float(x) for x in row[3:-1]])
        for row in rows["single"]:
            for probabilities in ranked[row[0]]:
                assert [float(x) for x in row[3:-1]] == pytest.approx(probabilities, abs=1e-4), row[0]
    # and training moved the model: the comparison above is not between two untouched inits
    assert single_valid[0]["valid_loss"] != single_valid[1]["valid_loss"]
