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


# `llamavid serve` and the commands that talk to it (`--server`).
SERVER_VAR = "LLAMAVID_SERVER"
API_KEY_VAR = "LLAMAVID_API_KEY"


def env_var(key: str) -> str:
    """The variable that sets a key's default: fps → LLAMAVID_FPS."""
    return f"LLAMAVID_{key.upper()}"


# Every variable llamavid reads, with what it does: the man page's ENVIRONMENT section is
# rendered from this table, and a test checks the sources read nothing that is not in it.
ENVIRONMENT: dict[str, str] = {
    **{env_var(key): f"Default for --{key.replace('_', '-')} (config key {key})." for key in KEYS},
    "LLAMAVID_CONFIG_DIR": "Folder holding config.toml (default: the user config folder, ~/.config/llamavid on Linux).",
    "LLAMAVID_CACHE_DIR": "Folder of the encode cache (default: the user cache folder, ~/.cache/llamavid on Linux).",
    "LLAMAVID_CACHE_SIZE": "Most the encode cache may hold, in bytes or with a unit (500M, 20G); default 20G.",
    "LLAMAVID_DATA_DIR": "Folder of chat's line history (default: the user data folder, ~/.local/share/llamavid on Linux).",
    "LLAMAVID_EVA_WEIGHTS": "LAVIS eva_vit_g.pth used when --eva-weights is not given (default: ./eva_vit_g.pth).",
    SERVER_VAR: "Default for --server of ask, chat and summarize: the URL of a running llamavid serve (http://127.0.0.1:11435).",
    API_KEY_VAR: "Default for llamavid serve --api-key; ask, chat and summarize send it to --server as a Bearer token.",
    "LLAMAVID_DEBUG": "Set to 1 to show tracebacks instead of one-line errors.",
    "NO_COLOR": "Set to anything to print no colour.",
    "HF_HOME": "Hugging Face folder; downloaded checkpoints live in its hub/ cache.",
    "HF_HUB_OFFLINE": "Set to 1 to never reach the network: only checkpoints already in the cache are used.",
    "RAY_TMPDIR": "Where the local Ray that summarize --ray starts keeps its session files (Ray's own; default /tmp).",
    "RAY_BACKEND_LOG_LEVEL": "Ray's C++ log level; summarize --ray sets fatal unless given (info shows Ray's notices).",
    "RAY_USAGE_STATS_ENABLED": "Ray's usage statistics; summarize --ray sets 0 (off) unless given.",
    "LLAMAVID_TEST_RAY_DIE_ONCE": "Test hook: a file path; the first summarize --ray actor call that does not find "
    "it creates it and kills its own process, so tests see Ray retry.",
}

# Files llamavid reads or writes, for the man page's FILES section.
FILES: dict[str, str] = {
    "$LLAMAVID_CONFIG_DIR/config.toml": "Defaults for the options above, as top-level keys: " + ", ".join(KEYS) + ".",
    "$LLAMAVID_CACHE_DIR/": "Cached encodes (*.vidtok) and transcripts (*.cues.json), least recently used evicted first "
    "(llamavid cache list|clear).",
    "$LLAMAVID_DATA_DIR/chat_history": "Lines typed in llamavid chat.",
    "$HF_HOME/hub/": "Checkpoints from llamavid models pull (llamavid models list|rm).",
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
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
        import tomli as tomllib
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
