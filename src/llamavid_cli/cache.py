"""Encodes kept between runs: `.vidtok` files (with features) keyed by content + model + sampling.

Asking a second question about a video skips decoding and the vision tower entirely. Entries
are plain `.vidtok` files in the user cache folder (`LLAMAVID_CACHE_DIR` or platformdirs'),
named by a hash of the source's content hash, the model's weight fingerprint and the sampling;
the least recently used are evicted past a size limit (`LLAMAVID_CACHE_SIZE`, default 20 GB).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import vidtok
from .errors import UsageError, VidtokError

DEFAULT_LIMIT = 20 * 1024**3
SUFFIX = ".vidtok"


def cache_dir() -> Path:
    override = os.environ.get("LLAMAVID_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("llamavid"))


def size_limit() -> int:
    """Bytes the cache may hold: LLAMAVID_CACHE_SIZE as bytes or with a unit (500M, 20G)."""
    raw = os.environ.get("LLAMAVID_CACHE_SIZE", "").strip()
    if not raw:
        return DEFAULT_LIMIT
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)B?", raw.upper())
    if not match:
        raise UsageError(f"LLAMAVID_CACHE_SIZE={raw!r} is not a size (e.g. 500M, 20G)")
    return int(float(match.group(1)) * 1024 ** " KMGT".index(match.group(2) or " "))


def key(source_hash: str, fingerprint: str, sampling: dict) -> str:
    blob = json.dumps({"source": source_hash, "model": fingerprint, "sampling": sampling}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def path_for(entry_key: str) -> Path:
    return cache_dir() / f"{entry_key}{SUFFIX}"


def lookup(entry_key: str) -> vidtok.Vidtok | None:
    """The cached encode, or None; a damaged entry is dropped rather than trusted."""
    path = path_for(entry_key)
    if not path.is_file():
        return None
    try:
        stored = vidtok.read(path)
    except VidtokError:
        path.unlink(missing_ok=True)
        return None
    os.utime(path)  # mark as recently used
    return stored


def store(entry_key: str, entry: vidtok.Vidtok) -> Path:
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = vidtok.write(path_for(entry_key), entry)
    evict(size_limit(), keep=path)
    return path


def transcript(source_hash: str, model: str) -> Path:
    """Where Whisper's cues for a source are kept (JSON), so a video is transcribed once."""
    return cache_dir() / f"{key(source_hash, model, {'kind': 'transcript'})}.cues.json"


@dataclass
class Entry:
    path: Path
    size: int
    used: float


def entries() -> list[Entry]:
    folder = cache_dir()
    if not folder.is_dir():
        return []
    found = [Entry(p, p.stat().st_size, p.stat().st_mtime) for p in folder.glob(f"*{SUFFIX}")]
    return sorted(found, key=lambda e: e.used, reverse=True)


def evict(limit: int, keep: Path | None = None) -> list[Path]:
    """Delete least recently used entries until the cache fits in `limit` bytes."""
    removed = []
    current = entries()
    total = sum(e.size for e in current)
    for entry in reversed(current):  # oldest first
        if total <= limit:
            break
        if entry.path == keep:
            continue
        entry.path.unlink(missing_ok=True)
        total -= entry.size
        removed.append(entry.path)
    return removed


def clear() -> int:
    """Delete every cached encode (and kept transcripts); return how many encodes went."""
    count = 0
    for entry in entries():
        entry.path.unlink(missing_ok=True)
        count += 1
    for transcript_file in cache_dir().glob("*.cues.json") if cache_dir().is_dir() else []:
        transcript_file.unlink(missing_ok=True)
    return count
