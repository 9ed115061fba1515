"""Extraction stages: one utterance's media -> a stream's frame features (text; acoustic: a speech encoder
or openSMILE; visual: FER DenseNet or a vision encoder)."""
