"""``memobert-export-hf CKPT DIR``: a memobert checkpoint as files other tools load.

``DIR`` receives the text side as a Hugging Face ``BertForMaskedLM`` directory
(``config.json``, ``model.safetensors``, ``vocab.txt``): on text-only input its hidden states
and masked-word scores are memobert's. ``DIR/memobert/`` receives the whole multimodal model
(embedders, encoder, every head) as ``model.safetensors`` with a ``config.json`` holding the
model and task options; ``--memobert-init DIR/memobert`` initialises from it. The checkpoint
is read weights-only; nothing is pickled on the way out.
"""

import argparse
import os
import sys
from typing import Dict, Optional

__all__ = ["export_hf", "main", "MEMOBERT_SUBDIR"]

MEMOBERT_SUBDIR = "memobert"


def _untie(weights: Dict) -> tuple:
    """Weights without aliases of an earlier tensor (safetensors stores no shared memory), and the aliases."""
    kept, tied, seen = {}, {}, {}
    for key, tensor in weights.items():
        origin = seen.get((tensor.data_ptr(), tensor.shape, tensor.stride()))
        if origin is not None:
            tied[key] = origin
        else:
            seen[(tensor.data_ptr(), tensor.shape, tensor.stride())] = key
            kept[key] = tensor.contiguous()
    return kept, tied


def _write_safetensors(path: str, tensors: Dict, metadata: Dict[str, str]) -> None:
    from safetensors.torch import save

    from memobert_plugin.files import atomic_open

    with atomic_open(path, "wb") as handle:
        handle.write(save(tensors, metadata=metadata))


def export_hf(checkpoint: str, out_dir: str, vocab_path: Optional[str] = None) -> Dict[str, str]:
    """Write both exports; returns what was written where."""
    # torch and fairseq (the vocabulary) are imported here, not for --help
    from memobert_plugin.data.vocabulary import BertVocabulary
    from memobert_plugin.models.encoder import LAYER_NORM_EPS
    from memobert_plugin.models.memobert import upgrade_embedder_names
    from memobert_plugin.models.pretrained import EXPORT_FORMAT, bert_state_from_memobert
    from memobert_plugin.files import atomic_open, write_json
    from memobert_plugin.checkpoints.policy import load_memobert_checkpoint

    state = load_memobert_checkpoint(checkpoint)  # weights-only, its config checked
    cfg = state.get("cfg") or {}
    model_cfg, task_cfg = dict(cfg.get("model") or {}), dict(cfg.get("task") or {})
    if not model_cfg or "model" not in state:
        raise ValueError(f"{checkpoint}: no model configuration or weights (not a fairseq checkpoint of memobert?)")
    vocab_path = vocab_path or os.path.join(str(task_cfg.get("data", "")), "dict.txt")
    if not os.path.isfile(vocab_path):
        raise FileNotFoundError(f"{vocab_path}: the checkpoint's dictionary is not there; pass --vocab")
    vocab = BertVocabulary.load(vocab_path)
    weights = dict(state["model"])
    upgrade_embedder_names(weights)
    if weights["text.tokens.weight"].shape[0] != len(vocab):
        raise ValueError(f"{vocab_path} has {len(vocab)} entries but the checkpoint's word embeddings "
                         f"{weights['text.tokens.weight'].shape[0]}: pass the data dir's dict.txt with --vocab")

    os.makedirs(os.path.join(out_dir, MEMOBERT_SUBDIR), exist_ok=True)
    layers = int(model_cfg["encoder_layers"])
    bert = {(key if key.startswith("cls.") else f"bert.{key}"): tensor
            for key, tensor in bert_state_from_memobert(weights, layers).items()
            if not key.startswith("pooler.")}  # BertForMaskedLM has no pooler
    _write_safetensors(os.path.join(out_dir, "model.safetensors"), bert, {"format": "pt"})
    write_json(os.path.join(out_dir, "config.json"), {
        "architectures": ["BertForMaskedLM"], "model_type": "bert",
        "vocab_size": len(vocab), "hidden_size": int(model_cfg["encoder_embed_dim"]), "num_hidden_layers": layers,
        "num_attention_heads": int(model_cfg["encoder_attention_heads"]),
        "intermediate_size": int(model_cfg["encoder_ffn_embed_dim"]), "hidden_act": "gelu",
        "hidden_dropout_prob": float(model_cfg.get("dropout", 0.1)),
        "attention_probs_dropout_prob": float(model_cfg.get("attention_dropout", 0.1)),
        "max_position_embeddings": int(weights["text.positions.weight"].shape[0]), "type_vocab_size": 2,
        "layer_norm_eps": LAYER_NORM_EPS, "pad_token_id": vocab.pad(), "position_embedding_type": "absolute",
        "tie_word_embeddings": True,
    })
    with atomic_open(os.path.join(out_dir, "vocab.txt")) as handle:
        handle.write("".join(f"{symbol}\n" for symbol in vocab.symbols))

    whole_dir = os.path.join(out_dir, MEMOBERT_SUBDIR)
    kept, tied = _untie(weights)
    _write_safetensors(os.path.join(whole_dir, "model.safetensors"), kept, {"format": "pt"})
    write_json(os.path.join(whole_dir, "config.json"),
                {"format": EXPORT_FORMAT, "source": os.path.abspath(checkpoint), "model": model_cfg, "task": task_cfg,
                 "tied": tied})
    return {"bert": out_dir, "memobert": whole_dir}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="memobert-export-hf",
        description="Write a memobert checkpoint's text side as a transformers BertForMaskedLM directory (DIR) and "
                    "the whole multimodal model as safetensors (DIR/memobert, for --memobert-init).")
    parser.add_argument("checkpoint", help="memobert checkpoint (memobert_pretrain or memobert_emotion)")
    parser.add_argument("out_dir", help="directory to write (created if missing)")
    parser.add_argument("--vocab", help="the data dir's dict.txt (default: the one the checkpoint was trained on)")
    parser.add_argument("--user-dir", help="the extension the model was trained with (fairseq-train's --user-dir)")
    args = parser.parse_args(argv)
    try:
        from memobert_plugin.inference.bundle import import_user_dir

        import_user_dir(args.user_dir)
        written = export_hf(args.checkpoint, args.out_dir, args.vocab)
    except (ValueError, OSError, KeyError) as err:
        sys.exit(f"memobert-export-hf: error: {err}")
    print(f"transformers BertForMaskedLM (text side): {written['bert']}\n"
          f"whole multimodal model (--memobert-init): {written['memobert']}")


if __name__ == "__main__":
    main()
