"""Settings: the model, its sources and validation."""

from config.loader import ConfigError, LoadedConfig, effective, load, mask
from config.settings import PRIORITIES, Settings

__all__ = ["PRIORITIES", "ConfigError", "LoadedConfig", "Settings", "effective", "load", "mask"]
