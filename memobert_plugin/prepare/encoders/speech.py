"""Speech encoders from local files: 16 kHz wave -> ``[frames, dim]`` hidden states (20 ms frames).

Two ecosystems, one loader (:func:`load_speech_encoder`), nothing downloaded:

* a transformers model directory (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``)
  whose ``model_type`` is one of :data:`TRANSFORMERS_SPEECH_MODELS` (wav2vec 2.0, HuBERT, WavLM,
  data2vec-audio, and Whisper's encoder), loaded as :mod:`.loading` says;
* a fairseq ``.pt`` checkpoint of a pretrained ``wav2vec2``, ``hubert`` or ``data2vec_audio`` model
  (hydra ``cfg`` or the older ``args`` of the released wav2vec_small.pt), loaded weights-only
  (:mod:`memobert_plugin.checkpoints.safe_loading`). The three share fairseq's wav2vec 2.0 encoder (convolutional
  feature extractor, layer norm, projection, transformer), which is all that feature extraction
  runs, so each is built as that encoder from its own options.

``layers`` counts transformer blocks from 1; layer ``k`` is what the library calls
``hidden_states[k]``: block ``k``'s output, and for the last block the model's final output (with
the final layer norm of pre-LN models). Several layers give their mean. None is the final output.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import os
import warnings
from abc import ABC, abstractmethod
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from memobert_plugin.checkpoints.safe_loading import (
    checkpoint_options,
    literal_conv_layers,
    load_checkpoint_weights_only,
    refuse_interpolation,
)
from memobert_plugin.prepare.media.audio import SAMPLE_RATE
from memobert_plugin.checkpoints.model_bounds import check_model_dims
from memobert_plugin.prepare.encoders.loading import config_sizes, load_transformers_model, read_model_config
from memobert_plugin.prepare.report import ItemError

__all__ = ["TRANSFORMERS_SPEECH_MODELS", "FAIRSEQ_SPEECH_MODELS", "SPEECH_EXTRACTORS", "SpeechEncoder",
           "load_speech_encoder", "speech_model_name", "parse_layers"]

#: transformers ``model_type`` -> the class read (its base model: no CTC or pretraining head)
TRANSFORMERS_SPEECH_MODELS = {"wav2vec2": "Wav2Vec2Model", "hubert": "HubertModel", "wavlm": "WavLMModel",
                              "data2vec-audio": "Data2VecAudioModel", "whisper": "WhisperModel"}
#: fairseq model names (``cfg.model._name``) whose pretrained checkpoints hold a wav2vec 2.0 encoder
FAIRSEQ_SPEECH_MODELS = ("wav2vec2", "hubert", "data2vec_audio")
#: the names the acoustic stage records for its extractor: the family, the same from either ecosystem
SPEECH_EXTRACTORS = ("wav2vec2", "hubert", "wavlm", "data2vec_audio", "whisper")
#: the parts of a fairseq model that feature extraction runs (the rest are pretraining heads)
_FAIRSEQ_ENCODER_PARTS = ("feature_extractor", "layer_norm", "post_extract_proj", "encoder")
#: config fields that size a transformers speech model, each bounded before the model is built
_TRANSFORMERS_SIZES = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "conv_dim", "conv_kernel",
    "conv_stride", "num_conv_pos_embeddings", "num_conv_pos_embedding_groups", "conv_pos_kernel_size",
    "num_conv_pos_embedding_layers", "num_buckets", "max_bucket_distance", "vocab_size", "d_model",
    "encoder_layers", "decoder_layers", "encoder_attention_heads", "decoder_attention_heads", "encoder_ffn_dim",
    "decoder_ffn_dim", "num_mel_bins", "max_source_positions", "max_target_positions",
)
_FAIRSEQ_SIZES = ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads",
                  "conv_pos", "conv_pos_groups", "pos_conv_depth")
#: Whisper: 10 ms mel frames, two of them per encoder frame, windows padded to max_source_positions frames
_WHISPER_HOP, _WHISPER_WINDOWS_PER_PASS = 160, 8


def parse_layers(text: Optional[str]) -> Optional[List[int]]:
    """``--layer``: ``9`` (one layer), ``6-9`` (the mean of 6..9) or ``3,6,9`` (the mean of those); None: the last."""
    if text is None or str(text).strip() == "":
        return None
    try:
        layers = []
        for part in str(text).split(","):
            first, _, last = part.strip().partition("-")
            layers += list(range(int(first), int(last or first) + 1))
    except ValueError:
        raise ValueError(f"--layer {text!r}: expected a layer (9), a range (6-9) or a list (3,6,9)") from None
    if not layers:
        raise ValueError(f"--layer {text!r}: an empty range")
    return sorted(set(layers))


class SpeechEncoder(ABC):
    """A frozen speech encoder: 16 kHz wave -> ``[frames, dim]``, the mean of the chosen layers' outputs."""

    kind: str
    #: the longest wave it reads, in seconds (None: any)
    max_seconds: Optional[float] = None

    def __init__(self, path: str, model: torch.nn.Module, model_type: str, num_layers: int, dim: int,
                 normalize: bool, layers: Union[None, int, Sequence[int]], device: str):
        layers = [layers] if isinstance(layers, int) else sorted(set(layers)) if layers else [num_layers]
        bad = [k for k in layers if not 1 <= k <= num_layers]
        if bad:
            raise ValueError(f"{path}: layer {bad[0]} out of range; the model has layers 1..{num_layers}")
        self.path, self.model_type, self.num_layers, self.dim, self.normalize = path, model_type, num_layers, dim, normalize
        self.layers = layers
        self.device = device
        self.model = model.to(device).eval()

    @abstractmethod
    def _num_frames(self, samples: int) -> int:
        """How many frames the model makes of ``samples`` samples."""

    @abstractmethod
    def _batch(self, sources: List[torch.Tensor]) -> List[torch.Tensor]:
        """``[1, samples]`` waves -> each one's ``[frames, dim]`` features (the mean of :attr:`layers`)."""

    def check_length(self, wave: np.ndarray) -> None:
        if self._num_frames(len(wave)) < 1:
            raise ItemError(f"audio too short for the speech encoder ({len(wave) / SAMPLE_RATE * 1000:.0f} ms)")

    def _source(self, wave: np.ndarray) -> torch.Tensor:
        self.check_length(wave)
        source = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).to(self.device)[None]
        if self.normalize:  # models trained on normalised waves (e.g. the large LV-60 ones, data2vec)
            source = torch.nn.functional.layer_norm(source, source.shape)
        return source

    @torch.inference_mode()
    def batch(self, waves: Sequence[np.ndarray]) -> List[np.ndarray]:
        """``[frames, dim]`` features of each wave, computed together where the model allows."""
        return [f.float().cpu().numpy() for f in self._batch([self._source(w) for w in waves])]

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        return self.batch([wave])[0]

    def describe(self) -> dict:
        return {"format": self.kind, "model_type": self.model_type, "layers": self.num_layers, "dim": self.dim,
                "normalize": self.normalize, "read_layers": self.layers}


def _mean(outputs: List[torch.Tensor]) -> torch.Tensor:
    return outputs[0] if len(outputs) == 1 else torch.stack(outputs).mean(0)


def _length_groups(lengths: Sequence[int], max_padding: float) -> List[List[int]]:
    """Indices of ``lengths`` in groups padded together: similar lengths (the longest at most
    ``max_padding`` times the shortest), so that padding wastes little compute; a 7-s and a 3-s
    utterance padded together cost more than each alone (measured on CPU: 1.2x over 5 utterances)."""
    groups: List[List[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if groups and lengths[i] <= lengths[groups[-1][0]] * max_padding:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


class _ConvTransformer(SpeechEncoder):
    """The wav2vec 2.0 family: a convolutional front end, then a transformer over its frames.

    The front end runs wave by wave: the base models' group norm spans a whole wave, so padding
    would change it. The transformer sees the padded batch with a padding mask, which is exact:
    padded frames get no attention weight and are zeroed before the positional convolution, as
    that convolution's own zero padding is.
    """

    #: longest over shortest wave (in frames) that share a padded transformer batch
    max_padding = 1.1

    @abstractmethod
    def _front_end(self, wave: torch.Tensor) -> torch.Tensor:
        """``[1, samples]`` -> ``[1, frames, dim]``: the convolutional features, projected for the transformer."""

    @abstractmethod
    def _encode(self, features: torch.Tensor, padding: Optional[torch.Tensor]) -> List[torch.Tensor]:
        """``[batch, frames, dim]`` (``padding`` True at padded frames) -> the outputs of :attr:`layers`."""

    def _batch(self, sources: List[torch.Tensor]) -> List[torch.Tensor]:
        features = [self._front_end(source)[0] for source in sources]
        out: List[Optional[torch.Tensor]] = [None] * len(features)
        for group in _length_groups([len(f) for f in features], self.max_padding):
            lengths = [len(features[i]) for i in group]
            padded = torch.nn.utils.rnn.pad_sequence([features[i] for i in group], batch_first=True)
            padding = torch.arange(padded.shape[1], device=padded.device)[None] >= torch.tensor(lengths, device=padded.device)[:, None]
            hidden = _mean(self._encode(padded, padding if padding.any() else None))
            for row, (i, n) in enumerate(zip(group, lengths)):
                out[i] = hidden[row, :n]
        return out


class _FairseqSpeech(_ConvTransformer):
    """fairseq's ``Wav2Vec2Model.forward(features_only=True)`` in two halves (its masking and dropout are off in eval)."""

    kind = "fairseq"

    def _front_end(self, wave: torch.Tensor) -> torch.Tensor:
        features = self.model.layer_norm(self.model.feature_extractor(wave).transpose(1, 2))
        return features if self.model.post_extract_proj is None else self.model.post_extract_proj(features)

    def _encode(self, features: torch.Tensor, padding: Optional[torch.Tensor]) -> List[torch.Tensor]:
        top = self.layers[-1]
        # fairseq counts blocks from 0; the last block's output is the encoder's final output
        final, layer_results = self.model.encoder(features, padding_mask=padding,
                                                  layer=None if top == self.num_layers else top - 1)
        return [final if k == self.num_layers else layer_results[k - 1][0].transpose(0, 1) for k in self.layers]

    def _num_frames(self, samples: int) -> int:
        return int(self.model._get_feat_extract_output_lengths(torch.tensor([samples]))[0])


def _block_outputs(blocks: torch.nn.ModuleList, wanted: Sequence[int], run: Callable[[], torch.Tensor],
                   num_layers: int) -> List[torch.Tensor]:
    """The outputs of the 1-based ``blocks`` in ``wanted`` while ``run()`` runs the encoder; the final
    output (``run``'s result) for the last block. When the last block is not wanted the run stops
    after the highest wanted block: the blocks above it are never computed."""
    captured: Dict[int, torch.Tensor] = {}
    top = max(wanted)

    def keep(k):
        def hook(module, inputs, output):
            captured[k] = output[0] if isinstance(output, tuple) else output
            if k == top:
                raise _LayerReached

        return hook

    hooks = [blocks[k - 1].register_forward_hook(keep(k)) for k in wanted if k != num_layers]
    try:
        captured[num_layers] = run()
    except _LayerReached:
        pass
    finally:
        for hook in hooks:
            hook.remove()
    return [captured[k] for k in wanted]


class _LayerReached(Exception):
    """Ends a transformers encoder's forward at the highest requested block."""


class _TransformersSpeech(_ConvTransformer):
    """A transformers wav2vec 2.0-family model's ``forward`` in two halves (its time masking is off in eval)."""

    kind = "huggingface"

    def _front_end(self, wave: torch.Tensor) -> torch.Tensor:
        projected = self.model.feature_projection(self.model.feature_extractor(wave).transpose(1, 2))
        return projected[0] if isinstance(projected, tuple) else projected  # HuBERT's returns only the states

    def _encode(self, features: torch.Tensor, padding: Optional[torch.Tensor]) -> List[torch.Tensor]:
        mask = None if padding is None else ~padding
        return _block_outputs(self.model.encoder.layers, self.layers,
                              lambda: self.model.encoder(features, attention_mask=mask).last_hidden_state,
                              self.num_layers)

    def _num_frames(self, samples: int) -> int:
        return int(self.model._get_feat_extract_output_lengths(samples))


class _WhisperEncoder(SpeechEncoder):
    """Whisper's encoder on log-mel windows padded to its fixed length (30 s for the released models),
    as Whisper itself reads speech; each wave's frames are the first ``ceil(mel frames / 2)``."""

    kind = "huggingface"

    def __init__(self, path, model, *args, **kwargs):
        from transformers import WhisperFeatureExtractor

        encoder = model.get_encoder()
        super().__init__(path, encoder, *args, **kwargs)
        window = encoder.config.max_source_positions * 2 * _WHISPER_HOP
        if window % SAMPLE_RATE:  # the feature extractor counts its window in whole seconds
            raise ValueError(f"{path}: max_source_positions {encoder.config.max_source_positions} is not a whole "
                             "number of seconds (a multiple of 50) as Whisper's windows are")
        self.max_seconds = window / SAMPLE_RATE
        self.mel = WhisperFeatureExtractor(feature_size=encoder.config.num_mel_bins, sampling_rate=SAMPLE_RATE,
                                           hop_length=_WHISPER_HOP, chunk_length=window // SAMPLE_RATE)

    def _num_frames(self, samples: int) -> int:
        return math.ceil(samples // _WHISPER_HOP / 2)

    def _batch(self, sources: List[torch.Tensor]) -> List[torch.Tensor]:
        out = []
        for start in range(0, len(sources), _WHISPER_WINDOWS_PER_PASS):
            waves = [s[0].cpu().numpy() for s in sources[start: start + _WHISPER_WINDOWS_PER_PASS]]
            if any(len(w) > self.mel.n_samples for w in waves):
                raise ItemError(f"audio longer than Whisper's {self.max_seconds:g}-s window")
            mel = self.mel(waves, sampling_rate=SAMPLE_RATE, padding="max_length", return_tensors="pt")
            mel = mel.input_features.to(self.device, next(self.model.parameters()).dtype)
            hidden = _mean(_block_outputs(self.model.layers, self.layers,
                                          lambda: self.model(mel).last_hidden_state, self.num_layers))
            out += [hidden[row, :self._num_frames(len(w))] for row, w in enumerate(waves)]
        return out


def _legacy_model_options(options: dict, config_class: type) -> dict:
    """A pre-hydra checkpoint's flat options, reduced to the model's fields.

    argparse kept list and tuple options as their command-line strings (e.g. ``latent_temp``
    ``'(2,0.5,0.999995)'``); they are parsed as literals where the field holds a sequence.
    """
    model = {"_name": options.get("arch")}
    for f in dataclasses.fields(config_class):
        if f.name not in options:
            continue
        value = options[f.name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if isinstance(value, str) and isinstance(default, (tuple, list)):
            value = ast.literal_eval(value)
        model[f.name] = value
    return model


def _fairseq_options(state: dict, path: str, config_class: type) -> tuple:
    """(model options, task options) of a fairseq checkpoint, new (cfg) or old (args) style."""
    if state.get("cfg") is not None:
        model, task = checkpoint_options(state, path)
        return dict(model), dict(task)
    if state.get("args") is not None:
        options = vars(state["args"])
        return _legacy_model_options(options, config_class), options
    raise ValueError(f"{path}: no 'cfg' or 'args' entry; not a fairseq checkpoint")


def _encoder_weights(state: dict, model: torch.nn.Module, path: str) -> Dict[str, torch.Tensor]:
    """The checkpoint's tensors of the feature-extraction parts, all of them the model has and no other."""
    weights = state.get("model")
    if not isinstance(weights, dict):
        raise ValueError(f"{path}: no 'model' weights")
    wanted = {k: v for k, v in weights.items() if k.split(".")[0] in _FAIRSEQ_ENCODER_PARTS}
    expected = {k for k in model.state_dict() if k.split(".")[0] in _FAIRSEQ_ENCODER_PARTS}
    missing, unexpected = sorted(expected - set(wanted)), sorted(set(wanted) - expected)
    if missing or unexpected:
        raise ValueError(f"{path}: its encoder weights do not fit its own options "
                         f"(missing: {missing[:3]}, unexpected: {unexpected[:3]})")
    return wanted


def _load_fairseq(path: str, layers: Optional[Sequence[int]], device: str) -> SpeechEncoder:
    from fairseq.dataclass.utils import merge_with_parent
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model
    from omegaconf import OmegaConf

    state = load_checkpoint_weights_only(path)
    refuse_interpolation(state, path)
    model_options, task_options = _fairseq_options(state, path, Wav2Vec2Config)
    name = model_options.get("_name")
    if name not in FAIRSEQ_SPEECH_MODELS:
        raise ValueError(
            f"{path}: a {name!r} checkpoint; give a pretrained fairseq {', '.join(map(repr, FAIRSEQ_SPEECH_MODELS))} "
            "model (e.g. wav2vec_small.pt, hubert_base_ls960.pt), not a fine-tuned one"
        )
    dims = dict(config_sizes(model_options, _FAIRSEQ_SIZES))
    if "conv_feature_layers" in model_options:  # the one config string fairseq's model eval()s
        conv = literal_conv_layers(model_options["conv_feature_layers"], "conv_feature_layers", path)
        dims.update(conv_dim=[c for c, _, _ in conv], conv_kernel=[k for _, k, _ in conv],
                    conv_stride=[s for _, _, s in conv])
    check_model_dims(dims, path)
    # the other families' own options (HuBERT's label rate, data2vec's EMA) are not the encoder's
    options = {k: v for k, v in model_options.items() if k in Wav2Vec2Config.__dataclass_fields__}
    cfg = merge_with_parent(Wav2Vec2Config(), OmegaConf.create(options), remove_missing=True)
    with warnings.catch_warnings():  # fairseq 0.12 builds its positional convolution with a deprecated torch API
        warnings.simplefilter("ignore", FutureWarning)
        model = Wav2Vec2Model.build_model(cfg)
    if model.post_extract_proj is None and "post_extract_proj.weight" in state.get("model", {}):
        # data2vec projects the convolutional features even when their size is already the encoder's
        model.post_extract_proj = torch.nn.Linear(model.embed, cfg.encoder_embed_dim)
    try:
        model.load_state_dict(_encoder_weights(state, model, path), strict=False)
    except RuntimeError as err:  # a tensor of another shape than its options say
        raise ValueError(f"{path}: its weights do not fit its own options: {str(err).splitlines()[-1].strip()}") from None
    for head in ("quantizer", "project_q", "final_proj", "project_inp"):  # pretraining heads: never run
        if hasattr(model, head):
            setattr(model, head, None)
    normalize = bool(task_options.get("normalize", cfg.extractor_mode == "layer_norm"))
    return _FairseqSpeech(path, model, name, cfg.encoder_layers, cfg.encoder_embed_dim, normalize, layers, device)


def _load_transformers(path: str, layers: Optional[Sequence[int]], device: str) -> SpeechEncoder:
    config = read_model_config(path, TRANSFORMERS_SPEECH_MODELS, "speech model")
    model_type = config["model_type"]
    if config.get("add_adapter"):
        raise ValueError(f"{path}: a {model_type} model with an adapter; give a pretrained model without one")
    model = load_transformers_model(path, TRANSFORMERS_SPEECH_MODELS[model_type],
                                    config_sizes(config, _TRANSFORMERS_SIZES),
                                    optional_keys=("masked_spec_embed", "decoder."))
    if model_type == "whisper":
        return _WhisperEncoder(path, model, model_type, model.config.encoder_layers, model.config.d_model, False,
                               layers, device)
    preprocessor = os.path.join(path, "preprocessor_config.json")
    if os.path.isfile(preprocessor):
        with open(preprocessor, encoding="utf-8") as handle:
            normalize = bool(json.load(handle).get("do_normalize", False))
    else:  # without the feature extractor's settings, follow the model family's convention
        normalize = model_type == "data2vec-audio" or getattr(model.config, "feat_extract_norm", "") == "layer"
    return _TransformersSpeech(path, model, model_type, model.config.num_hidden_layers, model.config.hidden_size,
                               normalize, layers, device)


def speech_model_name(path: str) -> str:
    """The family of the encoder at ``path`` (one of :data:`SPEECH_EXTRACTORS`), read from its config only."""
    if os.path.isdir(path):
        name = read_model_config(path, TRANSFORMERS_SPEECH_MODELS, "speech model")["model_type"]
    elif os.path.isfile(path):
        state = load_checkpoint_weights_only(path)  # memory-mapped: the weights are not read
        from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config

        name = _fairseq_options(state, path, Wav2Vec2Config)[0].get("_name")
    else:
        raise FileNotFoundError(f"{path}: no speech encoder checkpoint file or model directory")
    return str(name).replace("-", "_")


def load_speech_encoder(path: str, layers: Union[None, int, Sequence[int]] = None, device: str = "cpu") -> SpeechEncoder:
    """A fairseq checkpoint file or a transformers model directory (told apart by being a folder)."""
    if os.path.isdir(path):
        return _load_transformers(path, layers, device)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no speech encoder checkpoint file or model directory")
    return _load_fairseq(path, layers, device)
