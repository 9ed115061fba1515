"""Issue 23: the options reach the objectives. Each objective's masking rate, measured through the
memobert_pretrain task (its training dataset's masked batches) and criterion (the count of units each
objective scored), is the rate its own option sets: whole-word MLM over words, SpanMVFR and SpanMVFC-KL over
face frames, SpanMAFR over speech frames. The masking primitives have tests of their own
(test_masking.py); this one fails when an objective reads another's option or the option is lost."""

import numpy as np
import pytest
import torch
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

from memobert_plugin.data.multimodal_dataset import UtteranceBatch
from memobert_plugin.streams import TEXT

#: each objective -> the option giving its masking rate
RATE_OPTION = {"wwmlm": "mlm_mask_prob", "span_mvfr": "visual_mask_prob", "span_mafr": "acoustic_mask_prob",
               "span_mvfc_kl": "visual_mask_prob"}
EPOCHS, BATCH = 3, 16


def _measured_rates(data: str, rates: dict) -> dict:
    """objective -> units its criterion scored / units it could mask, over EPOCHS epochs of the training split."""
    argv = [data, "--task", "memobert_pretrain", "--arch", "memobert_tiny", "--criterion", "memobert_pretrain",
            "--objectives", ",".join(RATE_OPTION), "--objective-ratios", "[0.4,0.2,0.2,0.2]",
            "--objective-mode", "sum", "--cpu"]
    for option, value in rates.items():
        argv += [f"--{option.replace('_', '-')}", str(value)]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train")
    model, criterion = task.build_model(cfg.model).eval(), task.build_criterion(cfg.criterion)
    dataset = task.dataset("train")
    special = np.zeros(len(task.vocab), dtype=bool)
    special[task.vocab.special_ids()] = True
    scored, maskable = dict.fromkeys(RATE_OPTION, 0), dict.fromkeys(RATE_OPTION, 0)
    for epoch in range(1, EPOCHS + 1):
        dataset.set_epoch(epoch)
        for start in range(0, len(dataset), BATCH):
            sample = dataset.collater([dataset[i] for i in range(start, min(start + BATCH, len(dataset)))])
            with torch.no_grad():
                _, _, logged = criterion(model, sample)
            batch = UtteranceBatch.of(sample)
            for name in RATE_OPTION:
                objective = task.objectives[name]
                if objective.modality == TEXT:
                    units = int((~special[batch.tokens.numpy()]).sum())
                else:
                    lengths = batch.frame_lengths[objective.modality]
                    if objective.target_stream:
                        lengths = lengths * (batch.frame_lengths[objective.target_stream] > 0)
                    units = int(lengths.sum())
                scored[name] += logged[f"{name}_count"]
                maskable[name] += units
    assert all(maskable.values()), f"the demo corpus lacks a stream: {maskable}"
    return {name: scored[name] / maskable[name] for name in RATE_OPTION}


@pytest.mark.parametrize("rates", [
    {},  # the defaults: 15% of words, 20% of face frames, 15% of speech frames
    {"mlm_mask_prob": 0.3, "visual_mask_prob": 0.45, "acoustic_mask_prob": 0.08},
], ids=["defaults", "options"])
def test_each_objective_masks_at_its_own_rate(rates, demo_corpus):
    defaults = {"mlm_mask_prob": 0.15, "visual_mask_prob": 0.2, "acoustic_mask_prob": 0.15}
    expected = {name: {**defaults, **rates}[option] for name, option in RATE_OPTION.items()}
    measured = _measured_rates(demo_corpus.pretrain_data, rates)
    # within 15% of the rate: about 3 standard errors over the ~1000 face and ~1300 speech frames of the demo's
    # training split per epoch (masked in spans of 3), and closer than the nearest other option (15% vs 20%)
    assert all(abs(measured[n] - expected[n]) < 0.15 * expected[n] for n in RATE_OPTION), (measured, expected)
