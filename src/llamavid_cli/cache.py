"""Encodes kept between runs: `.vidtok` files (with features) keyed by content + model + sampling.

Asking a second question about a video skips decoding and the vision tower entirely. Entries
are plain `.vidtok` files in the user cache folder (`LLAMAVID_CACHE_DIR` or platformdirs'),
named by a hash of the source's content hash, the model's weight fingerprint and the sampling;
the least recently used are evicted past a size limit (`LLAMAVID_CACHE_SIZE`, default 20G).

Whisper's transcripts are kept beside them (`<key>.cues.json`, keyed by the same content hash
and the Whisper model), count towards the limit and are evicted like encodes.

Sizes are binary: 1K = 1024 bytes, 1M = 1024K, 1G = 1024M, in the limit and in `cache list`.
A write that was killed leaves its temp file (`.<name>.<random>.tmp`, paths.py): such files
count towards the limit, eviction removes those untouched for ORPHAN_AGE seconds (a writer
that is still running keeps touching its file, so it is never pulled from under it), and
`cache clear` removes them all.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import paths
from .errors import LlamaVidError, UsageError, VidtokError

if TYPE_CHECKING:
    from .encoded import EncodedVideo
    from .subtitles import Cue

DEFAULT_LIMIT = 20 * 1024**3
SUFFIX = ".vidtok"
TRANSCRIPT_SUFFIX = ".cues.json"
HASH_SAMPLE = 4 << 20  # bytes hashed from each end of a source
UNITS = " KMGT"  # LLAMAVID_CACHE_SIZE's units, powers of 1024
ORPHAN_AGE = 15 * 60  # seconds without a write after which a temp file is a dead writer's


class CacheWriteError(LlamaVidError):
    """The encode cache could not keep an encode; the command that asked still has its answer."""


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
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?", raw.upper())
    if not match:
        raise UsageError(f"LLAMAVID_CACHE_SIZE={raw!r} is not a size (bytes, or with K, M, G or T: 500M, 20G)")
    return int(float(match.group(1)) * 1024 ** UNITS.index(match.group(2) or " "))


def format_size(size: int) -> str:
    """Bytes in LLAMAVID_CACHE_SIZE's units: 512, 3.4K, 12.0M, 20.0G."""
    power = 0
    while size >= 1024 ** (power + 1) and power < len(UNITS) - 1:
        power += 1
    return str(size) if power == 0 else f"{size / 1024**power:.1f}{UNITS[power]}"


def content_hash(path: Path) -> str:
    """A source's identity for the cache: its size and its first and last 4 MiB (a sample, so an
    hour of video is not read twice; an edit that keeps the size and both ends goes unnoticed)."""
    import hashlib  # here and in key(): `cache list` imports this module at start-up

    size = Path(path).stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(HASH_SAMPLE))
        if size > 2 * HASH_SAMPLE:
            f.seek(-HASH_SAMPLE, 2)
            digest.update(f.read())
    return digest.hexdigest()[:32]


def key(source_hash: str, fingerprint: str, sampling: dict) -> str:
    import hashlib

    blob = json.dumps({"source": source_hash, "model": fingerprint, "sampling": sampling}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def path_for(entry_key: str) -> Path:
    return cache_dir() / f"{entry_key}{SUFFIX}"


def lookup(entry_key: str) -> EncodedVideo | None:
    """The cached encode, or None; a damaged entry is dropped rather than trusted."""
    from . import vidtok  # here and in store(): `cache list` imports this module at start-up

    path = path_for(entry_key)
    if not paths.is_regular(path):
        return None
    try:
        stored = vidtok.read(path)
    except VidtokError:
        path.unlink(missing_ok=True)
        return None
    _touch(path)
    return stored


def _touch(path: Path) -> None:
    try:
        os.utime(path)  # mark as recently used
    except OSError:
        pass  # a read-only cache still answers


def store(entry_key: str, entry: EncodedVideo) -> Path:
    """Keep an encode; any failure is one CacheWriteError line that names the cache and the reason."""
    from . import vidtok

    limit = size_limit()
    _make_folder("encode")
    try:
        path = vidtok.write(path_for(entry_key), entry)
    except vidtok.WriteError as exc:
        raise _write_error("encode", str(exc)) from None
    evict(limit, keep=path)
    return path


def _make_folder(what: str) -> Path:
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise _write_error(what, f"{folder} is a file, not a folder") from None
    except OSError as exc:
        raise _write_error(what, f"cannot create {folder} ({paths.reason(exc)})") from None
    if not folder.is_dir():  # a symlink to a file, or a file named like one of its parents
        raise _write_error(what, f"{folder} is a file, not a folder")
    return folder


def _write_error(what: str, detail: str) -> CacheWriteError:
    return CacheWriteError(
        f"the encode cache could not keep this {what}: {detail}; free space there, set LLAMAVID_CACHE_DIR, "
        "or pass --no-cache"
    )


def transcript_path(source_hash: str, model: str) -> Path:
    """Where Whisper's cues for a source are kept (JSON), so a video is transcribed once."""
    return cache_dir() / f"{key(source_hash, model, {'kind': 'transcript'})}{TRANSCRIPT_SUFFIX}"


def lookup_transcript(source_hash: str, model: str) -> list[Cue] | None:
    """Whisper's cues for this source and Whisper model, or None; a damaged file is dropped."""
    from .subtitles import Cue

    path = transcript_path(source_hash, model)
    if not paths.is_regular(path):
        return None
    try:
        cues = [Cue(**c) for c in json.loads(path.read_text(encoding="utf-8"))]
    except (OSError, ValueError, TypeError):
        path.unlink(missing_ok=True)
        return None
    _touch(path)
    return cues


def store_transcript(source_hash: str, model: str, cues: list[Cue]) -> Path:
    """Keep Whisper's cues (atomically); any failure is one CacheWriteError line."""
    limit = size_limit()
    _make_folder("transcript")
    text = json.dumps([{"start": c.start, "end": c.end, "text": c.text} for c in cues])
    try:
        path = paths.write_text(transcript_path(source_hash, model), text, LlamaVidError)
    except LlamaVidError as exc:
        raise _write_error("transcript", str(exc)) from None
    evict(limit, keep=path)
    return path


@dataclass
class Entry:
    path: Path
    size: int
    used: float  # last use (entries) or last write (temp files), seconds since the epoch


def _scan(match) -> list[Entry]:
    folder = cache_dir()
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        try:
            info = path.lstat()
        except OSError:
            continue  # removed meanwhile
        if stat.S_ISREG(info.st_mode) and match(path):
            found.append(Entry(path, info.st_size, info.st_mtime))
    return sorted(found, key=lambda e: e.used, reverse=True)


def entries() -> list[Entry]:
    """Cached encodes, most recently used first."""
    return _scan(lambda p: p.name.endswith(SUFFIX) and not paths.is_temp(p))


def transcripts() -> list[Entry]:
    """Kept Whisper transcripts, most recently used first."""
    return _scan(lambda p: p.name.endswith(TRANSCRIPT_SUFFIX) and not paths.is_temp(p))


def temp_files() -> list[Entry]:
    """Temp files of writes in progress, or of writers that were killed (newest first)."""
    return _scan(paths.is_temp)


def is_orphan(entry: Entry, now: float | None = None) -> bool:
    return (now or time.time()) - entry.used > ORPHAN_AGE


def evict(limit: int, keep: Path | None = None) -> list[Path]:
    """Remove dead writers' temp files, then the least recently used encodes and transcripts until
    the cache fits in `limit` bytes.

    A temp file written to within ORPHAN_AGE counts towards the total but is left alone."""
    removed = []
    temps = temp_files()
    total = sum(e.size for e in temps)
    for temp in temps:
        if is_orphan(temp):
            temp.path.unlink(missing_ok=True)
            total -= temp.size
            removed.append(temp.path)
    current = sorted(entries() + transcripts(), key=lambda e: e.used, reverse=True)
    total += sum(e.size for e in current)
    for entry in reversed(current):  # oldest first
        if total <= limit:
            break
        if entry.path == keep:
            continue
        entry.path.unlink(missing_ok=True)
        total -= entry.size
        removed.append(entry.path)
    return removed


def clear() -> tuple[int, int]:
    """Delete every cached encode, kept transcript and temp file; return (encodes, temp files) removed."""
    count = 0
    for entry in entries():
        entry.path.unlink(missing_ok=True)
        count += 1
    temps = temp_files()
    for temp in temps:
        temp.path.unlink(missing_ok=True)
    for kept in transcripts():
        kept.path.unlink(missing_ok=True)
    return count, len(temps)
