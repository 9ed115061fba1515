"""Feature store, vocabulary, masking, and the datasets the tasks compose."""

from .feature_store import FeatureStore, FeatureStoreWriter, feature_paths
from .masking import masking_rng, span_mask, whole_word_mask, word_spans
from .multimodal_dataset import FRAME_STREAMS, FrameLimits, MultimodalDataset, TextFormat
from .objective_batches import ObjectiveBatchesDataset
from .vocabulary import SPECIAL_TOKENS, BertVocabulary

__all__ = [
    "FeatureStore", "FeatureStoreWriter", "feature_paths",
    "masking_rng", "span_mask", "whole_word_mask", "word_spans",
    "FRAME_STREAMS", "FrameLimits", "MultimodalDataset", "TextFormat",
    "ObjectiveBatchesDataset", "SPECIAL_TOKENS", "BertVocabulary",
]
