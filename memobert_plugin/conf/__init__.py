"""Configuration shared by the tasks: where the data is and how much of each modality to keep."""

from memobert_plugin.conf.data_config import MultimodalDataConfig, frame_limit_field, frame_limits

__all__ = ["MultimodalDataConfig", "frame_limit_field", "frame_limits"]
