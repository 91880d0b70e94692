"""Settings: the model, its sources and validation."""

from config.loader import ConfigError, LoadedConfig, effective, load
from config.masking import mask, mask_text, mask_url
from config.settings import PRIORITIES, Settings

__all__ = ["PRIORITIES", "ConfigError", "LoadedConfig", "Settings", "effective", "load", "mask", "mask_text", "mask_url"]
