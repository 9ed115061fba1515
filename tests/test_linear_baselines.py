"""The demo world's linear baselines: numpy logistic regression, labels read off emotion words, per-fold UARs."""

import numpy as np

from memobert_plugin.evaluation.linear_baselines import (PROBE_FEATURES, LogisticRegression, distant_supervision_uar,
                                                         emotion_named, linear_probe_uars)
from memobert_plugin.prepare.demo_corpus import EMOTION_WORDS, EMOTIONS, write_demo_corpus


def test_logistic_regression_separates_what_a_line_separates_and_weighs_classes():
    rng = np.random.default_rng(0)
    centres = 3 * rng.standard_normal((4, 20))
    y = np.repeat(np.arange(4), [400, 40, 200, 20])  # imbalanced: class weights keep the small classes
    x = centres[y] + rng.standard_normal((len(y), 20))
    model = LogisticRegression(4).fit(x, y)
    predicted = model.predict(x)
    assert all((predicted[y == c] == c).mean() > 0.95 for c in range(4))


def test_labels_are_read_off_one_named_emotion():
    assert emotion_named("she felt cheerful today".split(), EMOTION_WORDS) == EMOTIONS.index("happy")
    assert emotion_named("i am mad and sad".split(), EMOTION_WORDS) is None  # two emotions: no label
    assert emotion_named("they saw the train .".split(), EMOTION_WORDS) is None


def test_baselines_give_a_uar_per_fold(tmp_path):
    corpus = write_demo_corpus(str(tmp_path / "w"), seed=2, pretrain_utterances=600, labelled_scale=0.05)
    distant = distant_supervision_uar(corpus.pretrain_data, corpus.emotion_data, EMOTION_WORDS, [1, 2, 3])
    probes = linear_probe_uars(corpus.emotion_data, EMOTIONS, [1, 2])
    assert sorted(distant) == [1, 2, 3] and set(probes) == set(PROBE_FEATURES)
    assert all(0 <= u <= 1 for u in list(distant.values()) + [u for p in probes.values() for u in p.values()])
    # the pretraining texts' words do carry the emotion of the face and voice: well above chance
    assert np.mean(list(distant.values())) > 0.4
