"""Configuration shared by the tasks: where the data is and how much of each modality to keep."""

from .data_config import MultimodalDataConfig

__all__ = ["MultimodalDataConfig"]
