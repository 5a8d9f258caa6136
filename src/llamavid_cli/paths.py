"""Files in and out: "is this a regular file" before anything opens it, and writes that never leave half a file.

`open()` on a FIFO blocks until a writer appears (forever, for a user who typed the wrong
name), so every input is checked with `os.stat` first; sockets and character devices are
refused the same way. Every output is written to a temp file beside its target and renamed
into place; the temp file is removed on any failure, Ctrl-C included. Temp files are named
`.<target name>.<random>.tmp`, which is how the encode cache recognises a killed writer's
leftovers (cache.py).
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import LlamaVidError, UsageError

TEMP_SUFFIX = ".tmp"

_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def is_regular(path: str | Path) -> bool:
    """True for a regular file (symlinks followed); never opens, so never blocks."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def regular_file(
    path: str | Path, error: type[LlamaVidError] = UsageError, expected: str = "a file", *, allow_empty: bool = False
) -> Path:
    """`path` when it is a regular, readable (and, unless allowed, non-empty) file; else one line in `error`."""
    path = Path(path)
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise error(f"{path} does not exist; check the path") from None
    except OSError as exc:
        raise error(f"{path} cannot be read ({reason(exc)})") from None
    except ValueError:
        raise error(f"{path!r} is not a usable path") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{path} is a directory; give {expected}")
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "a special file")
        raise error(f"{path} is {kind}, not a regular file; give {expected}")
    if info.st_size == 0 and not allow_empty:
        raise error(f"{path} is empty (0 bytes); copy or download it again")
    if not os.access(path, os.R_OK):
        raise error(f"{path} cannot be read (permission denied)")
    return path


def reason(exc: BaseException) -> str:
    """The OS's words for a failed read or write ("No space left on device"), also from safetensors' Rust errors."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    match = re.search(r"I/O error: (.+?)(?: \(os error \d+\))?$", text)
    return match.group(1) if match else text


def is_temp(path: Path) -> bool:
    """A temp file `replacing` made (live, or left by a writer that was killed)."""
    return path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)


def check_writable(path: str | Path, error: type[LlamaVidError] = LlamaVidError) -> None:
    """Fail before a long job, not after it, when nothing can be written beside `path`."""
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise error(f"cannot write {path} ({reason(exc)})") from None
    os.close(fd)
    os.unlink(name)


@contextmanager
def replacing(path: str | Path, error: type[LlamaVidError] = LlamaVidError, failures: tuple = ()) -> Iterator[Path]:
    """Yield a temp path beside `path` to write; on success it replaces `path`, on any failure it is removed.

    OSError (and the exception types in `failures`, e.g. safetensors' own) become one line in `error`
    that names `path` and the reason; the previous file at `path`, if any, is left as it was."""
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise error(f"cannot write {path} ({reason(exc)})") from None
    tmp = Path(name)
    os.close(fd)
    try:
        yield tmp
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; the result should be like any file the user writes
        os.replace(tmp, path)
    except (OSError, *failures) as exc:
        tmp.unlink(missing_ok=True)
        raise error(f"cannot write {path} ({reason(exc)})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str, error: type[LlamaVidError] = LlamaVidError) -> Path:
    """Write `text` to `path` atomically (see `replacing`)."""
    with replacing(path, error) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
