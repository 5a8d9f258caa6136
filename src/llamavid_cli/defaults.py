"""Built-in defaults that the library and the CLI's option declarations share.

They live in a module that imports nothing, so declaring the commands (`llamavid --help`)
does not load torch, PyAV or transformers just to read a default. The library's own settings
(`pipeline.GenerationSettings`, `video.Sampling`) take their defaults from here.
"""

AUTO_MODEL = "auto"  # `--model auto`: pipeline.choose_model picks per video
DEFAULT_PROMPT = "Describe this video in detail."  # the instruction an encode's context tokens are made for
DEFAULT_WHISPER = "openai/whisper-large-v3"  # speech recognition for --transcribe

# Where the model runs: `auto` lets loader pick (a GPU when there is one, float16 there, float32 on CPU).
DEVICE = "auto"
DTYPE = "auto"
QUANTIZE = "none"

# The original chat CLI's generation defaults (pipeline.GenerationSettings).
TEMPERATURE = 0.2
TOP_P = 0.7
MAX_NEW_TOKENS = 512

# Frame sampling, method.md §4: the released models were trained at 1 frame per second (video.Sampling).
FPS = 1.0

# `ask --evidence`: how many top moments are shown (evidence.py finds them).
EVIDENCE_MOMENTS = 3
