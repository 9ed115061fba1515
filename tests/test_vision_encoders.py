"""Vision encoders (transformers ViT and CLIP vision) on the astronaut's detected face, against the
library's forward; the visual stage with and without a FER model."""

import json
import logging

import numpy as np
import pytest
import torch

pytest.importorskip("cv2", reason="the visual extractor needs the 'extract' extra (opencv-python-headless)")
pytest.importorskip("skimage", reason="the astronaut photo comes from scikit-image (test extra)")

import cv2  # noqa: E402

from memobert_plugin.prepare.media.faces import HaarFaceDetector, read_face_folder  # noqa: E402
from memobert_plugin.prepare.manifest import Utterance  # noqa: E402
from memobert_plugin.prepare.stages.visual import VisualStage  # noqa: E402
from memobert_plugin.prepare.encoders.vision import load_vision_encoder  # noqa: E402
from prepare_material import astronaut_gray, prepare_here, tiny_fer, tiny_vision_encoder  # noqa: E402,F401

#: the families' pixel normalisation (transformers' image processors' defaults)
_MEAN_STD = {"vit": ([0.5] * 3, [0.5] * 3),
             "clip": ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])}


def _faces(size):
    detections = HaarFaceDetector(face_size=size).detect(astronaut_gray(), frame=0)
    assert len(detections) == 1 and detections[0].face.shape == (size, size)
    return np.stack([detections[0].face, detections[0].face[::-1]])  # the face, and upside down


@torch.inference_mode()
def _library_features(family, path, faces):
    import transformers

    mean, std = _MEAN_STD["vit" if family == "vit" else "clip"]
    rgb = np.repeat(faces[..., None], 3, axis=-1).astype(np.float32) / 255.0
    pixels = torch.from_numpy(((rgb - mean) / std).astype(np.float32)).permute(0, 3, 1, 2)
    if family == "vit":
        return transformers.ViTModel.from_pretrained(path).eval()(pixel_values=pixels).last_hidden_state[:, 0].numpy()
    if family == "clip":
        return transformers.CLIPModel.from_pretrained(path).eval().vision_model(pixel_values=pixels).pooler_output.numpy()
    return transformers.CLIPVisionModel.from_pretrained(path).eval()(pixel_values=pixels).pooler_output.numpy()


@pytest.mark.parametrize("family", ["vit", "clip_vision_model", "clip"])
def test_vision_encoder_features_are_the_librarys(family, tmp_path):
    path = tiny_vision_encoder(family, str(tmp_path))
    encoder = load_vision_encoder(path)
    assert encoder.dim == 32 and encoder.image_size == 32
    faces = _faces(encoder.image_size)
    features = encoder(faces)
    expected = _library_features(family, path, faces)
    assert features.shape == (2, 32)
    assert np.allclose(features, expected, atol=1e-5), np.abs(features - expected).max()
    assert not np.allclose(features[0], features[1], atol=1e-3)  # the two faces differ


def test_vision_directories_are_refused_unless_known_and_bounded(tmp_path):
    path = tiny_vision_encoder("vit", str(tmp_path))
    config_path = tmp_path / "vit" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "model_type": "resnet"}))
    with pytest.raises(ValueError, match="model_type 'resnet' is not a vision model memobert reads"):
        load_vision_encoder(path)
    config_path.write_text(json.dumps({**config, "image_size": 10 ** 7}))
    with pytest.raises(ValueError, match="config.json: image_size = 10000000 is out of bounds"):
        load_vision_encoder(path)


def _face_folder(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    gray = astronaut_gray()
    for i, crop in enumerate((gray[60:170, 170:280], gray[70:170, 180:270])):
        cv2.imwrite(str(folder / f"{i}.png"), crop)
    return str(folder)


def test_visual_stage_with_a_vision_encoder_with_and_without_fer(tiny_fer, tmp_path):  # noqa: F811
    path = tiny_vision_encoder("clip_vision_model", str(tmp_path))
    utterance = Utterance(line=1, id="u", text="t", video=_face_folder(tmp_path))
    alone = VisualStage(encoder=path, vad="energy")
    assert alone.streams == {"visual": 32}
    assert alone.config()["extractor"] == "clip_vision" and alone.config()["checkpoint"] is None
    frames = alone.extract(utterance)
    assert set(frames) == {"visual"} and frames["visual"].shape == (2, 32)
    crops = read_face_folder(utterance.video, 32)  # the folder's images, in name order, at the encoder's size
    assert np.allclose(frames["visual"], load_vision_encoder(path)(crops), atol=1e-6)
    both = VisualStage(tiny_fer, encoder=path, vad="energy")
    assert both.streams == {"visual": 32, "visual_fer": 8}
    with_fer = both.extract(utterance)
    assert np.allclose(with_fer["visual"], frames["visual"]) and with_fer["visual_fer"].shape == (2, 8)
    with pytest.raises(ValueError, match="needs a vision encoder .* or a FER model"):
        VisualStage()


def test_prepare_visual_without_fer_says_so_once(tmp_path, caplog, minilm_dir):
    from prepare_material import write_manifest

    path = tiny_vision_encoder("vit", str(tmp_path))
    manifest = write_manifest(str(tmp_path / "m.tsv"), [{"id": "u", "text": "hello there", "video": _face_folder(tmp_path)}])
    with caplog.at_level(logging.INFO):
        error = prepare_here("all", "--manifest", manifest, "--out", tmp_path / "out", "--vocab",
                             f"{minilm_dir}/vocab.txt", "--vision-encoder", path, "--vad", "energy", "--labels", "none")
    assert not error, error
    said = [r.getMessage() for r in caplog.records if "visual_fer" in r.getMessage()]
    assert len(said) == 1 and "no --fer-model" in said[0] and "span_mvfc_kl" in said[0]
    dataset = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert dataset["dims"]["visual"] == 32 and "visual_fer" not in dataset["dims"]
    assert not list((tmp_path / "out").glob("*.visual_fer.*"))
