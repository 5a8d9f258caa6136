"""Ten questions about one video: ten `llamavid ask` processes against ten requests to one warm server.

    python bench/serve.py                        # tiny random checkpoint, generated clip (CPU ok)
    python bench/serve.py --model vid-7b --video talk.mp4 --device cuda --questions 10

Four rows, measured side by side in one run, each from an empty encode cache except where
"cached" says the video's encode is already there (from the row before it):

    ask ×N, no cache    every process loads the model and decodes the video
    ask ×N, cached      every process loads the model; the encode comes from the cache
    serve ×N, no cache  one process loaded once (start-up timed apart); each request decodes
    serve ×N, cached    the same server; each request reads the encode from the cache

The server is a real `llamavid serve` subprocess, asked over HTTP as any client would, one
question after another (the time a script asking ten questions waits). Prints a table, then
one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tiny_setup(workdir: Path, seconds: float) -> tuple[str, Path]:
    """A tiny checkpoint in the official layout and a generated clip, made like the tests make theirs."""
    sys.path.insert(0, str(ROOT / "tests"))
    import checkpoint_factory as factory
    import media

    os.environ.setdefault("HF_HOME", str(workdir / "hf"))
    factory.install_bert_tokenizer(Path(os.environ["HF_HOME"]))
    ckpt = factory.write_checkpoint(workdir / "tiny-ckpt")
    clip = media.make_video(workdir / "clip.mp4", seconds=seconds, fps=25, width=320, height=180, pattern_kind="photo")
    return str(ckpt), clip


def questions(n: int) -> list[str]:
    return [f"Question {i + 1}: what happens in this video?" for i in range(n)]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "llamavid_cli", *args]


def time_asks(model: str, video: Path, asked: list[str], common: list[str], env: dict, cache: bool) -> float:
    started = time.perf_counter()
    for question in asked:
        extra = [] if cache else ["--no-cache"]
        subprocess.run(cli("ask", str(video), question, "--model", model, *common, *extra), env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - started


def start_server(model: str, common: list[str], env: dict, folder: Path) -> tuple[subprocess.Popen, str, float]:
    started = time.perf_counter()
    args = ["serve", "--model", model, "--port", "0", "--allowed-media-path", str(folder), *common]
    proc = subprocess.Popen(cli(*args), env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in proc.stderr:
        if "listening on http://" in line:
            return proc, line.split("listening on ", 1)[1].split()[0], time.perf_counter() - started
    raise SystemExit("the server did not start")


def time_requests(url: str, video: Path, asked: list[str], generation: dict, cache: bool) -> float:
    started = time.perf_counter()
    for question in asked:
        part = {"type": "video_url", "video_url": {"url": video.resolve().as_uri()}}
        body = {"messages": [{"role": "user", "content": [part, {"type": "text", "text": question}]}],
                "cache": cache, **generation}  # fmt: skip
        request = urllib.request.Request(url + "/v1/chat/completions", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=None) as response:
            json.loads(response.read())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint (default: a tiny random one)")
    parser.add_argument("--video", type=Path, help="video (default: a generated 320x180 clip, --seconds long)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the generated clip")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="llamavid-bench-serve-"))
    model, video = args.model, args.video
    if model is None or video is None:
        tiny_model, tiny_video = tiny_setup(workdir, args.seconds)
        model, video = model or tiny_model, video or tiny_video
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "LLAMAVID_CACHE_DIR": str(workdir / "cache")}
    common = ["--device", args.device, "--dtype", args.dtype]
    asked = questions(args.questions)
    generation_flags = ["-t", "0", "--max-new-tokens", str(args.max_new_tokens)]
    generation = {"temperature": 0, "max_tokens": args.max_new_tokens}

    rows = {}
    rows["ask, no cache"] = time_asks(model, video, asked, common + generation_flags, env, cache=False)
    time_asks(model, video, asked[:1], common + generation_flags, env, cache=True)  # fills the cache
    rows["ask, cached"] = time_asks(model, video, asked, common + generation_flags, env, cache=True)
    env["LLAMAVID_CACHE_DIR"] = str(workdir / "cache-server")  # the server starts from an empty cache
    proc, url, startup = start_server(model, common, env, Path(video).resolve().parent)
    try:
        rows["serve, no cache"] = time_requests(url, Path(video), asked, generation, cache=False)
        time_requests(url, Path(video), asked[:1], generation, cache=True)  # fills the cache
        rows["serve, cached"] = time_requests(url, Path(video), asked, generation, cache=True)
    finally:
        proc.terminate()
        proc.wait()

    n = len(asked)
    print(f"{n} questions about {Path(video).name} ({model}); server start-up {startup:.1f} s, not counted below")
    print(f"{'':18} {'total s':>8} {'per question s':>15} {'vs ask, no cache':>17}")
    for name, seconds in rows.items():
        print(f"{name:18} {seconds:8.2f} {seconds / n:15.2f} {rows['ask, no cache'] / seconds:16.1f}x")
    print(
        json.dumps({"questions": n, "server_startup_s": round(startup, 2), **{k: round(v, 2) for k, v in rows.items()}})
    )


if __name__ == "__main__":
    main()
