"""The exception family. Every message is one line that says what went wrong and what to do.

The CLI's error boundary prints `Error: <message>` on stderr and exits with `exit_code`;
anything that is not a LlamaVidError is a bug and keeps its traceback.
"""


class LlamaVidError(Exception):
    """Base class: a problem the user can act on."""

    exit_code = 1


class UsageError(LlamaVidError):
    """Flags or arguments that cannot work together."""

    exit_code = 2


class CheckpointError(LlamaVidError):
    """A model folder, config or shard that cannot be used."""


class DownloadError(LlamaVidError):
    """Weights that are neither on disk nor reachable."""


class VideoError(LlamaVidError):
    """A file that cannot be decoded into frames."""


class VidtokError(LlamaVidError):
    """A .vidtok file that is damaged, too new, or from another model."""


class ContextLengthError(LlamaVidError):
    """The prompt plus video tokens do not fit the model's context."""
