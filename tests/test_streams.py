"""The stream declarations: what a declaration must say, and the options that follow from it."""

import dataclasses
from types import SimpleNamespace

import pytest

from memobert_plugin.conf import MultimodalDataConfig, frame_limits
from memobert_plugin.models import MemobertConfig
from memobert_plugin.streams import FrameStream, frame_streams, input_streams, register_stream


def test_builtin_streams_and_their_options():
    assert [s.name for s in frame_streams()][:3] == ["visual", "visual_fer", "acoustic"]
    assert [s.name for s in input_streams()][:2] == ["visual", "acoustic"]
    data_fields = {f.name: f.default for f in dataclasses.fields(MultimodalDataConfig)}
    assert data_fields["visual_max_frames"] == 36 and data_fields["acoustic_max_frames"] == 64
    model_fields = {f.name for f in dataclasses.fields(MemobertConfig)}
    assert {"visual_feature_dim", "acoustic_feature_dim"} <= model_fields and "visual_fer_feature_dim" not in model_fields
    # a target stream is truncated with its input stream
    options = {stream.limit_option: 3 for stream in input_streams()}  # and any an extension declared
    limits = frame_limits(SimpleNamespace(**{**options, "visual_max_frames": 5, "acoustic_max_frames": 7}))
    assert (limits["visual"], limits["visual_fer"], limits["acoustic"]) == (5, 5, 7)
    # where each input stream comes from at prediction, and the option naming its extractor
    media = {s.name: (s.medium, s.extractor_option) for s in input_streams()}
    assert media["visual"] == ("video", "--fer-model") and media["acoustic"] == ("audio", "--wav2vec2")


@pytest.mark.parametrize("stream, message", [
    (FrameStream("visual", dim=4, frames="x", max_frames=3), "'visual' is taken"),
    (FrameStream("text", dim=4, frames="x", max_frames=3), "'text' is taken"),
    (FrameStream("heart-rate", dim=4, frames="x", max_frames=3), "not an identifier"),
    (FrameStream("gaze", dim=4, frames="x"), "max_frames must be positive"),
    (FrameStream("gaze", dim=0, frames="x", max_frames=3), "dim must be positive"),
    (FrameStream("gaze_labels", dim=4, frames="x", target_of="gaze"), "'gaze' is not a declared input stream"),
    (FrameStream("fer_again", dim=4, frames="x", target_of="visual_fer"), "'visual_fer' is not a declared input"),
    (FrameStream("face_ids", dim=4, frames="x", max_frames=3, target_of="visual"), "takes visual's limit"),
    (FrameStream("scent", dim=4, frames="x", max_frames=3, medium="smell"), "medium must be one of"),
    (FrameStream("gaze", dim=4, frames="x", max_frames=3, extractors={"g": "m:C"}), "needs the medium it reads"),
    (FrameStream("gaze", dim=4, frames="x", max_frames=3, medium="video", extractor_option="gaze-model"),
     "is not an option"),
])
def test_bad_declarations_are_refused(stream, message):
    before = frame_streams()
    with pytest.raises(ValueError, match=message):
        register_stream(stream)
    assert frame_streams() == before
