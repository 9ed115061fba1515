"""Shared material for the data-preparation tests (imported by the test_prepare_* modules; not a test module itself).

Real data: the speech and transcripts of Debian's ``pocketsphinx-testdata`` and
scikit-image's astronaut photo. Models: a small randomly initialised wav2vec 2.0 saved
in both fairseq formats and as a Hugging Face directory holding the same weights, and a
small randomly initialised FER DenseNet checkpoint.
"""

import argparse
import os
import re
import shutil
from typing import Dict, List, Optional

import numpy as np
import pytest
import torch

from memobert_plugin.files import read_json, sha256_file, write_json

POCKETSPHINX = "/usr/share/pocketsphinx/test/data"
FPS = 10
_TINY_W2V = dict(
    encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=2,
    conv_feature_layers="[(48, 10, 5)] + [(48, 3, 2)] * 4 + [(48, 2, 2)] * 2", conv_pos=16, conv_pos_groups=4,
    final_dim=16, latent_vars=8, latent_groups=2,
)
# fairseq wav2vec2 state-dict names -> transformers Wav2Vec2Model names (first match wins)
_FAIRSEQ_TO_HF = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.0\.", r"feature_extractor.conv_layers.\1.conv."),
    (r"^feature_extractor\.conv_layers\.0\.2\.", "feature_extractor.conv_layers.0.layer_norm."),
    (r"^layer_norm\.", "feature_projection.layer_norm."),
    (r"^post_extract_proj\.", "feature_projection.projection."),
    (r"^encoder\.pos_conv\.0\.weight_g$", "encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
    (r"^encoder\.pos_conv\.0\.weight_v$", "encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
    (r"^encoder\.pos_conv\.0\.bias$", "encoder.pos_conv_embed.conv.bias"),
    (r"^encoder\.layers\.(\d+)\.self_attn\.", r"encoder.layers.\1.attention."),
    (r"^encoder\.layers\.(\d+)\.self_attn_layer_norm\.", r"encoder.layers.\1.layer_norm."),
    (r"^encoder\.layers\.(\d+)\.fc1\.", r"encoder.layers.\1.feed_forward.intermediate_dense."),
    (r"^encoder\.layers\.(\d+)\.fc2\.", r"encoder.layers.\1.feed_forward.output_dense."),
    (r"^(encoder\.layer_norm|encoder\.layers\.\d+\.final_layer_norm)\.", r"\1."),
    (r"^mask_emb$", "masked_spec_embed"),
]


@pytest.fixture(scope="session")
def pocketsphinx() -> str:
    if not os.path.isdir(os.path.join(POCKETSPHINX, "librivox")):
        pytest.skip("Debian package pocketsphinx-testdata is not installed (apt-get install pocketsphinx-testdata)")
    return POCKETSPHINX


def speech_utterances(root: str) -> List[Dict[str, str]]:
    """The transcribed recordings of pocketsphinx-testdata: id, speaker, text, wav."""
    items = []
    for folder, listing, speaker in (("librivox", "transcription", "austen"), ("cards", "cards.transcription", "cards")):
        with open(os.path.join(root, folder, listing), encoding="utf-8") as handle:
            for line in handle:
                match = re.match(r"<s>(.*)</s>\s*\((.+)\)", line.strip())
                text, name = match.group(1).strip(), match.group(2)
                items.append({"id": f"{speaker}-{name[-4:]}", "speaker": speaker, "text": text,
                              "wav": os.path.join(root, folder, f"{name}.wav")})
    return items


def prepare_here(*args) -> str:
    """``memobert-prepare ARGS`` in this process (no interpreter start-up); its error message, or ''."""
    from memobert_plugin.prepare.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as stop:
        return str(stop.code)
    return ""


def read_tsv(path) -> List[Dict[str, str]]:
    """A TSV with a header line (a report, a .meta.tsv, a manifest), as one dict per row."""
    with open(path, encoding="utf-8") as handle:
        header, *rows = [line.rstrip("\n").split("\t") for line in handle]
    return [dict(zip(header, row)) for row in rows]


def write_manifest(path: str, rows: List[Dict[str, object]], columns=None) -> str:
    columns = columns or list(rows[0])
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\t".join(columns) + "\n")
        for row in rows:
            handle.write("\t".join("" if row.get(c) is None else str(row.get(c)) for c in columns) + "\n")
    return path


def _tiny_fairseq_model():
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    return Wav2Vec2Model.build_model(Wav2Vec2Config(**_TINY_W2V)).eval()


def _huggingface_copy(fairseq_state: Dict[str, torch.Tensor], directory: str) -> None:
    """The same weights as a transformers Wav2Vec2Model directory."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=[48] * 7,
        conv_stride=[5, 2, 2, 2, 2, 2, 2], conv_kernel=[10, 3, 3, 3, 3, 2, 2], num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, feat_extract_norm="group", do_stable_layer_norm=False,
    )
    model = Wav2Vec2Model(config)
    renamed = {}
    for name, tensor in fairseq_state.items():
        for pattern, replacement in _FAIRSEQ_TO_HF:
            if re.search(pattern, name):
                renamed[re.sub(pattern, replacement, name)] = tensor
                break
    missing = set(model.state_dict()) - set(renamed)
    assert not missing, f"no fairseq tensor for {sorted(missing)}"
    model.load_state_dict(renamed)
    model.save_pretrained(directory)


@pytest.fixture(scope="session")
def tiny_wav2vec2(tmp_path_factory) -> Dict[str, str]:
    """One random wav2vec 2.0 as a fairseq cfg checkpoint, an old-style args checkpoint and an HF directory."""
    root = tmp_path_factory.mktemp("wav2vec2")
    model = _tiny_fairseq_model()
    state = model.state_dict()
    paths = {"fairseq": str(root / "tiny.pt"), "fairseq_args": str(root / "tiny_args.pt"),
             "huggingface": str(root / "tiny_hf")}
    torch.save({"cfg": {"model": {"_name": "wav2vec2", **_TINY_W2V}, "task": {"normalize": False}}, "model": state},
               paths["fairseq"])
    # as the released wav2vec_small.pt: flat argparse options, sequences as their command-line strings
    args = argparse.Namespace(arch="wav2vec2", task="audio_pretraining", normalize=False,
                              latent_temp="(2, 0.5, 0.999995)", **_TINY_W2V)
    torch.save({"args": args, "model": state, "extra_state": {"val_loss": np.float64(3.5)}}, paths["fairseq_args"])
    _huggingface_copy(state, paths["huggingface"])
    return paths


@pytest.fixture(scope="session")
def tiny_fer(tmp_path_factory) -> str:
    """A random DenseNet-BC-10 expression model checkpoint (27-d features, 8 classes)."""
    from memobert_plugin.prepare.fer.model import DenseNetFER, save_fer_checkpoint

    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("fer") / "fer.pt")
    save_fer_checkpoint(path, DenseNetFER(depth=10), {"test_accuracy": 0.0})
    return path


def astronaut_gray() -> np.ndarray:
    import cv2
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)


def write_two_face_video(path: str, wav_path: str, speech_wav: str, speaker_left: bool) -> np.ndarray:
    """Two copies of the astronaut's face; one mouth moves while there is voice, the other in pauses.

    The audio alternates 0.8 s of real speech and 0.8 s of silence. Returns the per-frame
    voiced flags at ``FPS`` frames a second.
    """
    import cv2
    import soundfile

    face = astronaut_gray()[20:260, 110:350]  # 240 x 240 around the face
    speech, rate = soundfile.read(speech_wav, dtype="float32")
    voiced = np.repeat([True, False, True, False], 8)
    span = int(0.8 * rate)
    wave = np.concatenate([speech[rate: rate + span] if v else np.zeros(span, np.float32) for v in voiced[::8]])
    wave += np.random.default_rng(0).normal(0, 1e-3, len(wave)).astype(np.float32)
    soundfile.write(wav_path, wave, rate)

    def with_mouth(opening: int) -> np.ndarray:
        out = face.copy()
        cv2.ellipse(out, (114, 124), (16, opening), 0, 0, 360, 20, -1)
        return out

    frames = []
    for i, talking in enumerate(voiced):
        speaker = with_mouth(9 if talking and i % 2 else 2)
        listener = with_mouth(9 if not talking and i % 2 else 2)
        frames.append(np.concatenate([speaker, listener] if speaker_left else [listener, speaker], axis=1))
    write_video(path, frames)
    return voiced


def write_video(path: str, gray_frames: List[np.ndarray], fps: int = FPS, audio: Optional[np.ndarray] = None,
                sample_rate: int = 16000) -> None:
    """An MPEG-4 video of grey frames (even width and height), with an AAC mono track of ``audio`` (float, ±1) if given."""
    import av
    import cv2

    height, width = gray_frames[0].shape
    with av.open(path, "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt, stream.bit_rate = width, height, "yuv420p", 2_000_000
        sound = None
        if audio is not None:  # every stream is added before the first packet is muxed
            sound = container.add_stream("aac", rate=sample_rate)
            sound.layout = "mono"
        for gray in gray_frames:
            rgb = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if sound is None:
            return
        samples = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        for begin in range(0, len(samples), 1024):  # AAC's frame size
            frame = av.AudioFrame.from_ndarray(samples[None, begin: begin + 1024], format="s16", layout="mono")
            frame.sample_rate = sample_rate
            for packet in sound.encode(frame):
                container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)


def with_text_extractor(source: str, target) -> str:
    """A copy of a demo data dir whose dataset.json records the text extractor, as memobert-prepare does."""
    data = str(shutil.copytree(source, target))
    vocab = os.path.join(data, "vocab.txt")
    with open(os.path.join(data, "dict.txt"), encoding="utf-8") as lines, open(vocab, "w", encoding="utf-8") as out:
        out.writelines(line.split(" ")[0] + "\n" for line in lines)
    dataset = read_json(os.path.join(data, "dataset.json"))
    dataset["splits"] = {"all": {"extractors": {
        "text": {"tokenizer": "wordpiece", "path": vocab, "sha256": sha256_file(vocab)}}}}
    write_json(os.path.join(data, "dataset.json"), dataset)
    return data


# tiny speech encoders of each family: 3 blocks, 32-d, a 320-sample (20 ms) frame hop as the released models
_TINY_HF_SPEECH = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                       conv_dim=[32] * 4, conv_kernel=[10, 8, 8, 4], conv_stride=[5, 4, 4, 4],
                       num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
_TINY_FAIRSEQ_SPEECH = dict(encoder_layers=3, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=2,
                            conv_feature_layers="[(32, 10, 5)] + [(32, 8, 4)] * 2 + [(32, 4, 4)]", conv_pos=16,
                            conv_pos_groups=4, final_dim=16, extractor_mode="layer_norm")


def _tiny_transformers_speech(family: str):
    import sys

    sys.modules.setdefault("torchaudio", None)  # before transformers (see conftest)
    import transformers

    if family == "whisper":
        config = transformers.WhisperConfig(
            d_model=32, encoder_layers=3, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80, max_source_positions=1500,
            max_target_positions=16, vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            decoder_start_token_id=3, suppress_tokens=None, begin_suppress_tokens=None)
        return transformers.WhisperModel(config)
    config_class, model_class = {
        "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model"), "hubert": ("HubertConfig", "HubertModel"),
        "wavlm": ("WavLMConfig", "WavLMModel"), "data2vec-audio": ("Data2VecAudioConfig", "Data2VecAudioModel"),
    }[family]
    # WavLM as the large models are: layer-normed front end, pre-LN blocks and a final layer norm
    extra = dict(feat_extract_norm="layer", do_stable_layer_norm=True) if family == "wavlm" else {}
    return getattr(transformers, model_class)(getattr(transformers, config_class)(**_TINY_HF_SPEECH, **extra))


def _tiny_fairseq_speech(family: str):
    if family == "hubert":  # pre-LN, as HuBERT large
        from fairseq.data import Dictionary
        from fairseq.models.hubert.hubert import HubertConfig, HubertModel
        from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig

        options = dict(_TINY_FAIRSEQ_SPEECH, label_rate=50.0, layer_norm_first=True)
        return options, HubertModel(HubertConfig(**options), HubertPretrainingConfig(label_rate=50.0), [Dictionary()])
    from fairseq.examples.data2vec.models.data2vec_audio import Data2VecAudioConfig, Data2VecAudioModel

    options = dict(_TINY_FAIRSEQ_SPEECH, pos_conv_depth=2, conv_pos=8, ema_anneal_end_step=10, max_update=10)
    return options, Data2VecAudioModel(Data2VecAudioConfig(**options))


def tiny_speech_encoder(family: str, root: str):
    """``(path, model)``: a random encoder of ``family`` (a transformers model type, or ``fairseq-`` and a
    fairseq model name) saved as the library saves it (save_pretrained; a fairseq cfg checkpoint)."""
    torch.manual_seed(0)
    if family.startswith("fairseq-"):
        name = family[len("fairseq-"):]
        options, model = _tiny_fairseq_speech(name)
        path = os.path.join(root, f"{name}.pt")
        torch.save({"cfg": {"model": {"_name": name, **options}, "task": {"normalize": name == "data2vec_audio"}},
                    "model": model.state_dict()}, path)
        return path, model.eval()
    model = _tiny_transformers_speech(family)
    path = os.path.join(root, family)
    model.save_pretrained(path)
    return path, model.eval()


@torch.inference_mode()
def tiny_speech_reference(family: str, model, wave: np.ndarray, normalize: bool) -> List[np.ndarray]:
    """The library's own forward: ``hidden_states[k]`` (``[frames, dim]``) for k = 0..layers-1, and the final
    output (``last_hidden_state``; fairseq's ``layer=None``) for the last layer: the same as ``hidden_states[-1]``
    except in pre-LN transformers models, whose ``hidden_states`` leave out the final layer norm."""
    source = torch.from_numpy(wave)[None]
    if normalize:
        source = torch.nn.functional.layer_norm(source, source.shape)
    if family.startswith("fairseq-"):
        layers = len(model.encoder.layers)
        if family == "fairseq-hubert":
            run = lambda k: model.extract_features(source, mask=False, output_layer=k)[0]  # noqa: E731
        else:
            run = lambda k: model.extract_features(source, None, mask=False, layer=None if k is None else k - 1)["x"]  # noqa: E731
        return [None] + [run(k if k < layers else None)[0].numpy() for k in range(1, layers + 1)]
    if family == "whisper":
        from transformers import WhisperFeatureExtractor

        mel = WhisperFeatureExtractor(feature_size=80)(wave, sampling_rate=16000, padding="max_length",
                                                       return_tensors="pt").input_features
        out = model.encoder(mel, output_hidden_states=True)
        frames = -(-(len(wave) // 160) // 2)
        return [h[0, :frames].numpy() for h in out.hidden_states[:-1] + (out.last_hidden_state,)]
    out = model(source, output_hidden_states=True)
    return [h[0].numpy() for h in out.hidden_states[:-1] + (out.last_hidden_state,)]


def tiny_vision_encoder(family: str, root: str) -> str:
    """A random transformers ViT (``vit``), CLIP vision tower (``clip_vision_model``) or whole CLIP (``clip``)
    of 32x32 images, saved with save_pretrained; the directory."""
    import sys

    sys.modules.setdefault("torchaudio", None)  # before transformers (see conftest)
    import transformers

    torch.manual_seed(0)
    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
                 patch_size=8)
    if family == "vit":
        model = transformers.ViTModel(transformers.ViTConfig(**sizes))
    elif family == "clip_vision_model":
        model = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**sizes))
    else:
        model = transformers.CLIPModel(transformers.CLIPConfig(
            vision_config=sizes, projection_dim=16,
            text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                             vocab_size=100, max_position_embeddings=16)))
    path = os.path.join(root, family)
    model.save_pretrained(path)
    return path
