"""Built-in defaults that the library and the CLI's option declarations share.

They live in a module that imports nothing, so declaring the commands (`llamavid --help`)
does not load torch, PyAV or transformers just to read a default.
"""

AUTO_MODEL = "auto"  # `--model auto`: pipeline.choose_model picks per video
DEFAULT_PROMPT = "Describe this video in detail."  # the instruction an encode's context tokens are made for
DEFAULT_WHISPER = "openai/whisper-large-v3"  # speech recognition for --transcribe
