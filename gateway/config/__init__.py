"""gateway.toml + environment -> one frozen, validated Settings (being split into modules)."""

from gateway.config.load import *  # noqa: F403
from gateway.config.load import CONFIG_ENV, DEFAULT_CONFIG, MAX_AUTO_WORKERS, SCHEMA, Network  # noqa: F401
