"""Configuration: the typed schema (all defaults) and its YAML/command-line loader."""
from lib.config.loader import config_from_dict, config_to_dict, load_config, save_config
from lib.config.schema import Config

__all__ = ["Config", "config_from_dict", "config_to_dict", "load_config", "save_config"]
