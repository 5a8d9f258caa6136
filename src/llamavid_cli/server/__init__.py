"""`llamavid serve`: the model kept warm behind an OpenAI-compatible HTTP API.

    errors.py    OpenAI-shaped error bodies and the status of each failure
    schemas.py   the request body, and the completion / chunk objects sent back
    security.py  which files and keys are let in (--allowed-media-path, --max-upload-mb, --api-key)
    media.py     messages → history, question and the one video part; the part → a local file
    engine.py    the worker threads: decode the next video while the current answer generates
    app.py       the FastAPI app factory and the uvicorn runner with its readiness line

Everything a request computes goes through `pipeline` (`ready`, `answer`), exactly as `ask` does.
Importing this package needs fastapi and uvicorn; the CLI imports it inside `serve` only.
"""
