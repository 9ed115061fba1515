"""Pretrained encoders read from local files: transformers and fairseq speech models, ViT / CLIP vision
models, loaded without running code from a file."""
