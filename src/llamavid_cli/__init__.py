"""llamavid: question your videos from the terminal with LLaMA-VID (two tokens per frame)."""

__version__ = "0.1.0"
