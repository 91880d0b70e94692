"""Settings: the model, its sources and validation."""

from cluster.config.loader import ConfigError, LoadedConfig, effective, load
from cluster.config.masking import mask, mask_text, mask_url
from cluster.config.settings import PRIORITIES, Settings

__all__ = ["PRIORITIES", "ConfigError", "LoadedConfig", "Settings", "effective", "load", "mask", "mask_text", "mask_url"]
