"""The benchmark scripts' own logic: the useful-work count, the GPU peaks, and the GPU check's CPU run."""

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, run_cli

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))

import gpu_check  # noqa: E402
import pretrain_step  # noqa: E402


def test_encoder_flops_are_the_issue_figure_and_count_real_positions_only():
    fixed = [(pretrain_step.TEXT, pretrain_step.VISUAL, pretrain_step.ACOUSTIC)] * 8
    assert pretrain_step.encoder_flops("base", fixed) == pytest.approx(545e9, rel=0.002)  # BERT-base, 8 x 130
    assert pretrain_step.encoder_flops("base", [(10, 0, 20), (30, 36, 64)]) == pytest.approx(
        pretrain_step.encoder_flops("base", [(10, 0, 20)]) + pretrain_step.encoder_flops("base", [(30, 36, 64)]))


@pytest.mark.parametrize("name, fp32, bf16", [
    ("NVIDIA H200", 67, 989), ("NVIDIA H100 80GB HBM3", 67, 989), ("NVIDIA H100 PCIe", 51, 756),
    ("NVIDIA A100-SXM4-80GB", 19.5, 312),
])
def test_gpu_peaks_come_from_the_device_name(name, fp32, bf16):
    assert gpu_check.peaks(name) == {"fp32": fp32, "bf16": bf16, "fp16": bf16}


def test_unknown_gpu_has_no_peak():
    assert gpu_check.peaks("Tesla V100-SXM2-16GB") is None


def test_gpu_check_refuses_to_run_without_a_gpu_when_asked_for_one():
    if subprocess.run([sys.executable, "-c", "import torch; assert not torch.cuda.is_available()"]).returncode:
        pytest.skip("a GPU is visible")
    proc = run_cli(["bash", os.path.join(REPO_ROOT, "benchmarks", "gpu_check.sh")], check=False)
    assert proc.returncode != 0 and "no CUDA device visible" in proc.stderr


@pytest.mark.slow
def test_gpu_check_runs_every_row_the_cpu_allows():
    """The GPU check's code paths on CPU (tiny shape): each row measures, or says why it cannot run here."""
    proc = run_cli([sys.executable, os.path.join(REPO_ROOT, "benchmarks", "gpu_check.py"), "--device", "cpu",
                    "--steps", "1", "--updates", "1", "--batch-size", "4"], timeout=1800)
    rows = [line.split(" | ") for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row[0].lstrip("| ") for row in rows] == [
        "tiny step, fp32 (objective mix)", "tiny step, bf16 (objective mix)", "tiny step, fp16 (objective mix)",
        "fairseq-train --fp16", "fairseq-train --bf16", "fairseq-train fp32, 1-rank gloo distributed",
        "memobert-prepare acoustic on cpu", "memobert-prepare visual on cpu"]
    for row in rows:
        assert row[1] != "-" or row[3].startswith(("not run:", "failed:")), row
    assert all(row[1] != "-" for row in rows[:3] + rows[5:])  # what fairseq 0.12 runs on CPU does run


def test_variable_batches_have_the_demo_corpus_lengths_and_the_baselines_pad_each_modality():
    import numpy as np

    rng = np.random.default_rng(0)
    drawn = pretrain_step.batches("variable", 4, 2, rng)
    pool = set(pretrain_step.demo_lengths())
    assert len(drawn) == 2 and all(len(batch) == 4 and set(batch) <= pool for batch in drawn)
    lengths = [(3, 0, 2), (5, 4, 1)]
    input_ids, attention_mask, labels = pretrain_step._padded_concatenation(lengths, rng)
    assert attention_mask.shape == (2, 5 + 4 + 2)  # each modality padded to its batch maximum, concatenated
    assert attention_mask[0].tolist() == [1, 1, 1, 0, 0] + [0] * 4 + [1, 1]
    assert attention_mask.sum(1).tolist() == [5, 10]
    assert labels.ne(-100).logical_and(attention_mask.eq(0)).sum() == 0


def test_the_old_code_is_unpacked_from_git_and_imported_first_by_the_timing_child(tmp_path):
    import prepare

    if subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    code = prepare.archive_code("HEAD", str(tmp_path / "before"))
    assert os.path.isfile(os.path.join(code, "memobert_plugin", "prepare", "stages", "visual.py"))
    assert not os.path.exists(os.path.join(code, "tests"))  # the package only
    # the timing child's premise: with the archive on PYTHONPATH, its code is imported, not the installed tree's
    proc = subprocess.run([sys.executable, "-c", "import memobert_plugin; print(memobert_plugin.__file__)"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": code}, cwd=str(tmp_path),
                          check=True)
    assert proc.stdout.strip() == os.path.join(code, "memobert_plugin", "__init__.py")
    with pytest.raises(SystemExit, match="--before no-such-commit: git archive failed"):
        prepare.archive_code("no-such-commit", str(tmp_path / "missing"))
