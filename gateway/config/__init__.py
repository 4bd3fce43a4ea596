"""gateway.toml + environment -> one frozen, fully validated Settings; each default declared once.

Modules: ``schema`` (the one table of keys: parser, default, help), ``parsers`` (value parsers),
``settings`` (the frozen dataclasses, defaults read from the table), ``load`` (file + environment
-> Settings, every problem at once), ``credentials`` (secret key and TLS files), ``template``
(the commented gateway.toml `gateway init` writes). Import from the package.
"""

from gateway.config.credentials import MIN_SECRET_LENGTH, SECRET_ENV
from gateway.config.load import CONFIG_ENV, DEFAULT_CONFIG, ConfigError, config_path, load_settings
from gateway.config.parsers import MAX_AUTO_WORKERS, Network
from gateway.config.schema import BINDINGS, KEYS, LOG_FORMATS, SCHEMA, Key, default
from gateway.config.settings import (
    HeaderSettings,
    LogSettings,
    MetricsSettings,
    PasswordSettings,
    PolicySettings,
    ProxySettings,
    ServerSettings,
    SessionSettings,
    Settings,
    StoreSettings,
    UiSettings,
    UpstreamSettings,
)
from gateway.config.template import SECRET_FILE, InitOptions, check_options, config_text, toml_string

__all__ = [
    "BINDINGS",
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "KEYS",
    "LOG_FORMATS",
    "MAX_AUTO_WORKERS",
    "MIN_SECRET_LENGTH",
    "SCHEMA",
    "SECRET_ENV",
    "SECRET_FILE",
    "ConfigError",
    "HeaderSettings",
    "InitOptions",
    "Key",
    "LogSettings",
    "MetricsSettings",
    "Network",
    "PasswordSettings",
    "PolicySettings",
    "ProxySettings",
    "ServerSettings",
    "SessionSettings",
    "Settings",
    "StoreSettings",
    "UiSettings",
    "UpstreamSettings",
    "check_options",
    "config_path",
    "config_text",
    "default",
    "load_settings",
    "toml_string",
]
