"""User defaults: a TOML file in the platformdirs config folder, under LLAMAVID_* variables and flags.

Precedence, highest first: command-line flags, LLAMAVID_* environment variables, the config
file, built-in defaults. The file (`llamavid/config.toml`, or `$LLAMAVID_CONFIG_DIR/config.toml`)
holds top-level keys, e.g.:

    model = "vid-13b"
    device = "cuda"
    dtype = "float16"
    quantize = "4bit"
    fps = 0.5
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from .errors import UsageError

# key → type; each key is the name of the command option it sets a default for
KEYS: dict[str, type] = {
    "model": str,
    "device": str,
    "dtype": str,
    "quantize": str,
    "fps": float,
    "temperature": float,
    "top_p": float,
    "max_new_tokens": int,
}


def config_path() -> Path:
    override = os.environ.get("LLAMAVID_CONFIG_DIR")
    if override:
        return Path(override).expanduser() / "config.toml"
    from platformdirs import user_config_dir

    return Path(user_config_dir("llamavid")) / "config.toml"


def data_dir() -> Path:
    """Where chat keeps its line history: LLAMAVID_DATA_DIR or platformdirs' user data folder."""
    override = os.environ.get("LLAMAVID_DATA_DIR")
    if override:
        return Path(override).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("llamavid"))


def load() -> dict[str, Any]:
    """The validated settings from the config file ({} when there is none)."""
    path = config_path()
    if not path.is_file():
        return {}
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid TOML ({exc})") from None
    settings = {}
    for key, value in raw.items():
        if key not in KEYS:
            raise UsageError(f"{path}: unknown setting {key!r} (known: {', '.join(KEYS)})")
        kind = KEYS[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise UsageError(f"{path}: {key} must be a {kind.__name__}, not {value!r}")
        settings[key] = value
    return settings
