"""`llamavid serve` as a real process on a loopback port, spoken to by the official `openai`
client and by raw HTTP; `ask --server` against `ask`.

One server per module (the tiny checkpoint, greedy on the CPU); each test waits for what the
server says (its readiness line, /health), never for a fixed time.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from typer.testing import CliRunner

import media
from llamavid_cli.cli.app import app

openai = pytest.importorskip("openai")

KEY = "test-key"
CPU = ["--device", "cpu", "--dtype", "float32"]
QUESTION = "Who is there?"


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


class Server:
    """A `llamavid serve` subprocess: its URL once it says it listens, and its stderr kept."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llamavid_cli", "serve", "--port", "0", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        deadline = time.monotonic() + 180
        for line in self.proc.stderr:
            self.lines.append(line)
            if "listening on http://" in line:
                self.url = line.split("listening on ", 1)[1].split()[0]
                break
            assert time.monotonic() < deadline, "the server never said it was listening"
        else:
            raise AssertionError("the server ended before it listened:\n" + "".join(self.lines))
        self._drain = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True)
        self._drain.start()
        self.port = int(self.url.rsplit(":", 1)[1])

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def health(self) -> dict:
        with urllib.request.urlopen(self.url + "/health", timeout=30) as response:
            return json.loads(response.read())

    def wait_for(self, condition, timeout: float = 120.0) -> dict:
        """Poll /health until `condition(health)`; the server's own report, not a sleep, decides."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.health()
            if condition(state):
                return state
            assert time.monotonic() < deadline, f"the server never reached the state; last {state}"
            time.sleep(0.05)


def server_env(root: Path) -> dict[str, str]:
    env = {**os.environ, "LLAMAVID_CACHE_DIR": str(root / "cache"), "LLAMAVID_CONFIG_DIR": str(root / "config")}
    env.pop("LLAMAVID_API_KEY", None)
    return env


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_video_ckpt):
    allowed = tmp_path_factory.mktemp("allowed")
    outside = tmp_path_factory.mktemp("outside")
    clip = media.make_video(allowed / "clip.mp4", seconds=4, fps=5, width=64, height=48)
    still = media.make_image(allowed / "still.png")
    secret = media.make_video(outside / "secret.mp4", seconds=1, fps=5)
    (allowed / "escape.mp4").symlink_to(secret)
    (allowed / "inside.mp4").symlink_to(clip)  # a link that stays inside is fine
    return {"allowed": allowed, "outside": outside, "clip": clip, "still": still, "secret": secret}


@pytest.fixture(scope="module")
def server(files, tiny_video_ckpt, tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    args = ["--model", str(tiny_video_ckpt), *CPU, "--allowed-media-path", str(files["allowed"])]
    args += ["--api-key", KEY, "--max-upload-mb", "1"]
    started = Server(args, server_env(root))
    yield started
    started.close()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)


def video_part(path: Path) -> dict:
    return {"type": "video_url", "video_url": {"url": path.as_uri()}}


def data_url(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def user(part: dict, text: str = QUESTION) -> dict:
    return {"role": "user", "content": [part, {"type": "text", "text": text}]}


def ask_json(*args) -> dict:
    result = run("ask", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def post(server: Server, body, key: str | None = KEY, raw: bytes | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + "/v1/chat/completions", data, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# --- answers ---------------------------------------------------------------------------------


def test_greedy_answers_equal_ask_streamed_and_not(server, client, files, tiny_video_ckpt):
    expected = ask_json(files["clip"], QUESTION, "--model", tiny_video_ckpt, *CPU, "-t", 0, "--max-new-tokens", 12)
    kwargs = {"model": "llamavid", "messages": [user(video_part(files["clip"]))], "temperature": 0, "max_tokens": 12}
    done = client.chat.completions.create(**kwargs)
    assert done.object == "chat.completion"
    assert done.choices[0].message.content == expected["answer"]
    assert done.choices[0].finish_reason in ("stop", "length")
    assert done.usage.prompt_tokens == len(expected["prompt_ids"])
    assert done.usage.completion_tokens == len(expected["output_ids"])
    extra = done.model_extra["llamavid"]
    assert (extra["prompt_ids"], extra["output_ids"]) == (expected["prompt_ids"], expected["output_ids"])

    chunks = list(client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected["answer"]
    assert chunks[-1].usage.completion_tokens == len(expected["output_ids"])


def test_the_stream_is_sse_as_openai_sends_it(server, files):
    body = {"messages": [user(video_part(files["clip"]))], "temperature": 0, "max_tokens": 4, "stream": True}
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Authorization": f"Bearer {KEY}"})
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("content-type").startswith("text/event-stream")
    events = response.read().decode().split("\n\n")
    connection.close()
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: ") for e in events[:-1])
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def content_parts(files, tmp_vidtok):
    clip, still = files["clip"], files["still"]
    return {
        "video_url file://": video_part(clip),
        "video_url file:// via a link inside": video_part(files["allowed"] / "inside.mp4"),
        "video_url data:": {"type": "video_url", "video_url": {"url": data_url(clip, "video/mp4")}},
        "input_video": {
            "type": "input_video",
            "input_video": {"data": base64.b64encode(clip.read_bytes()).decode(), "format": "mp4"},
        },
        "image_url data:": {"type": "image_url", "image_url": {"url": data_url(still, "image/png")}},
        "image_url file://": {"type": "image_url", "image_url": {"url": still.as_uri()}},
        ".vidtok path": {"type": "video_url", "video_url": {"url": str(tmp_vidtok)}},
        ".vidtok file://": {"type": "video_url", "video_url": {"url": tmp_vidtok.as_uri()}},
    }


@pytest.fixture(scope="module")
def vidtok(files, tiny_video_ckpt):
    out = files["allowed"] / "clip.vidtok"
    result = run("encode", files["clip"], "--model", tiny_video_ckpt, *CPU, "--keep-features", "-o", out)
    assert result.exit_code == 0, result.stderr
    return out


def test_every_content_part_shape(server, client, files, vidtok):
    reference = None
    for name, part in content_parts(files, vidtok).items():
        done = client.chat.completions.create(model="llamavid", messages=[user(part)], temperature=0, max_tokens=3)
        extra = done.model_extra["llamavid"]
        assert extra["frames"] == (1 if "image" in name else 4), name
        if name.startswith(("video_url", "input_video")):  # the same clip, however it travels
            reference = reference or extra["output_ids"]
            assert extra["output_ids"] == reference, name


def test_history_gives_the_same_prompt_ids_as_ask_history(server, client, files, tiny_video_ckpt, tmp_path):
    history = [["What is shown?", "A pattern of blocks."], ["Is it moving?", "Yes, it changes."]]
    (tmp_path / "h.json").write_text(json.dumps(history))
    expected = ask_json(
        files["clip"], QUESTION, "--model", tiny_video_ckpt, *CPU, "-t", 0, "--max-new-tokens", 3,
        "--history", tmp_path / "h.json",
    )  # fmt: skip
    messages = [
        {"role": "system", "content": "You are helpful."},  # the released template keeps its own
        user(video_part(files["clip"]), history[0][0]),  # the video in the first message, as clients put it
        {"role": "assistant", "content": history[0][1]},
        {"role": "user", "content": history[1][0]},
        {"role": "assistant", "content": [{"type": "text", "text": history[1][1]}]},
        {"role": "user", "content": QUESTION},
    ]
    done = client.chat.completions.create(model="llamavid", messages=messages, temperature=0, max_tokens=3)
    assert done.model_extra["llamavid"]["prompt_ids"] == expected["prompt_ids"]
    assert done.choices[0].message.content == expected["answer"]


# --- refusals --------------------------------------------------------------------------------


def refusals(files):
    clip_part = video_part(files["clip"])
    big = base64.b64encode(b"\0" * (2 * 1024 * 1024)).decode()
    corrupt = base64.b64encode(b"this is not a video at all" * 40).decode()
    return [
        ("outside the allowed path", {"messages": [user(video_part(files["secret"]))]}, KEY, 403),
        ("a symlink escaping it", {"messages": [user(video_part(files["allowed"] / "escape.mp4"))]}, KEY, 403),
        ("a missing file", {"messages": [user(video_part(files["allowed"] / "gone.mp4"))]}, KEY, 404),
        (
            "dot-dot out of it",
            {
                "messages": [
                    user(
                        {
                            "type": "video_url",
                            "video_url": {"url": f"file://{files['allowed']}/../{files['outside'].name}/secret.mp4"},
                        }
                    )
                ]
            },
            KEY,
            403,
        ),  # fmt: skip
        (
            "http url",
            {"messages": [user({"type": "video_url", "video_url": {"url": "http://example.com/a.mp4"}})]},
            KEY,
            400,
        ),  # fmt: skip
        (
            "corrupt upload",
            {"messages": [user({"type": "input_video", "input_video": {"data": corrupt, "format": "mp4"}})]},
            KEY,
            400,
        ),  # fmt: skip
        (
            "not base64",
            {"messages": [user({"type": "input_video", "input_video": {"data": "@@@", "format": "mp4"}})]},
            KEY,
            400,
        ),  # fmt: skip
        (
            "oversize upload",
            {"messages": [user({"type": "input_video", "input_video": {"data": big, "format": "mp4"}})]},
            KEY,
            413,
        ),  # fmt: skip
        ("bad key", {"messages": [user(clip_part)]}, "wrong", 401),
        ("no key", {"messages": [user(clip_part)]}, None, 401),
        ("no video", {"messages": [{"role": "user", "content": "hello"}]}, KEY, 400),
        ("two videos", {"messages": [{"role": "user", "content": [clip_part, clip_part]}]}, KEY, 400),
        ("malformed body", {"messages": "hello"}, KEY, 422),
        ("bad temperature", {"messages": [user(clip_part)], "temperature": -1}, KEY, 422),
        (
            "last message not the user's",
            {"messages": [user(clip_part), {"role": "assistant", "content": "x"}]},
            KEY,
            400,
        ),  # fmt: skip
        ("empty question", {"messages": [user(clip_part, "  ")]}, KEY, 400),
        ("zero fps", {"messages": [user(clip_part)], "fps": 0}, KEY, 400),
        ("start after end", {"messages": [user(clip_part)], "start": "0:03", "end": 1}, KEY, 400),
        ("not a time", {"messages": [user(clip_part)], "start": "soon"}, KEY, 422),
        (
            "a video too long for the context",
            {"messages": [user(clip_part)], "fps": 400, "max_tokens": 4000},
            KEY,
            400,
        ),  # fmt: skip
    ]


def test_an_oversize_upload_gets_its_413_while_the_client_is_still_sending(server):
    # The server refuses on the declared length, then reads the rest (dropping it): closing
    # with the body unread would reset the connection under a client that is still sending.
    size = 8 * 1024 * 1024
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    connection.putrequest("POST", "/v1/chat/completions")
    for name, value in (
        ("Content-Type", "application/json"),
        ("Authorization", f"Bearer {KEY}"),
        ("Connection", "close"),
    ):
        connection.putheader(name, value)
    connection.putheader("Content-Length", str(size))
    connection.endheaders()
    chunk = b" " * 65536
    for _ in range(size // len(chunk)):
        connection.send(chunk)
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"]["code"] == "upload_too_large"
    connection.close()


def test_bad_requests_get_their_status_and_an_openai_error(server, files):
    for name, body, key, status in refusals(files):
        got, answer = post(server, body, key)
        assert got == status, (name, answer)
        error = answer["error"]
        assert set(error) >= {"message", "type", "code"} and error["message"] and "Traceback" not in error["message"], (
            name
        )
    got, answer = post(server, None, raw=b"{not json")
    assert got == 400 and answer["error"]["code"] == "invalid_json"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(server.url + "/v1/nothing-here", timeout=30)
    assert caught.value.code == 404 and json.loads(caught.value.read())["error"]["type"] == "not_found_error"
    assert server.health()["status"] == "ok"  # and it still answers
    assert post(server, {"messages": [user(video_part(files["clip"]))], "max_tokens": 2})[0] == 200
    assert "Traceback" not in "".join(server.lines)


def test_the_openai_client_raises_its_own_errors(client, files):
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="x", messages=[user(video_part(files["secret"]))])
    bad = openai.OpenAI(base_url=client.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="x", messages=[user(video_part(files["clip"]))])
    assert [m.id for m in client.models.list()]


# --- load ------------------------------------------------------------------------------------


def test_eight_concurrent_requests_are_all_answered(server, client, files):
    def one(i: int) -> str:
        kwargs = {"model": "llamavid", "messages": [user(video_part(files["clip"]), f"Question {i}?")], "max_tokens": 4}
        if i % 2:
            return "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(**kwargs, stream=True, temperature=0))  # fmt: skip
        return client.chat.completions.create(**kwargs, temperature=0).choices[0].message.content

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(8)))
    assert len(answers) == 8 and all(isinstance(a, str) for a in answers)
    assert server.wait_for(lambda h: h["queued"] == 0)["status"] == "ok"


def test_the_next_video_decodes_during_an_answer_and_a_disconnect_stops_it(server, files):
    before = server.health()["stopped"]
    body = {"messages": [user(video_part(files["clip"]))], "temperature": 0, "max_tokens": 3000, "stream": True}
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Authorization": f"Bearer {KEY}"})
    response = connection.getresponse()
    assert response.status == 200
    assert response.readline().startswith(b"data: ")  # the answer has started
    # the next request, a video no one has asked about (uncached): decoded while the first generates
    fresh = {"type": "video_url", "video_url": {"url": data_url(files["secret"], "video/mp4")}}
    with ThreadPoolExecutor(1) as pool:
        second = pool.submit(post, server, {"messages": [user(fresh)], "max_tokens": 2, "cache": False})
        state = server.wait_for(lambda h: h["prepared"] == 1 or not h["generating"])
        assert state["generating"] and state["prepared"] == 1, state  # decoded before the model was free
        connection.close()  # the client goes away mid-stream
        response.close()
        assert second.result()[0] == 200  # the next request is served
    state = server.wait_for(lambda h: h["stopped"] == before + 1 and h["queued"] == 0)
    stopped = [line for line in server.lines if "stopped after" in line][-1]
    assert int(stopped.split("stopped after ")[1].split()[0]) < 3000


def test_a_full_queue_is_503(files, tiny_video_ckpt, tmp_path):
    busy = Server(["--model", str(tiny_video_ckpt), *CPU, "--max-queue", "0"], server_env(tmp_path))
    try:
        part = {"type": "input_video", "input_video": {"data": base64.b64encode(files["clip"].read_bytes()).decode()}}
        body = {"messages": [user(part)], "max_tokens": 3000, "stream": True, "temperature": 0}
        connection = http.client.HTTPConnection("127.0.0.1", busy.port, timeout=120)
        connection.request("POST", "/v1/chat/completions", json.dumps(body))
        response = connection.getresponse()
        assert response.readline().startswith(b"data: ")  # generating: the one place is taken
        got, answer = post(busy, {"messages": [user(part)], "max_tokens": 2}, key=None)
        assert got == 503 and answer["error"]["code"] == "queue_full"
        connection.close()
        busy.wait_for(lambda h: h["queued"] == 0)
        assert post(busy, {"messages": [user(part)], "max_tokens": 2}, key=None)[0] == 200
    finally:
        busy.close()


# --- the CLI as a client ---------------------------------------------------------------------


def test_ask_server_matches_ask(server, files, tiny_video_ckpt, monkeypatch):
    monkeypatch.setenv("LLAMAVID_API_KEY", KEY)
    common = [files["clip"], QUESTION, "-t", 0, "--max-new-tokens", 5, "--start", "1"]
    local = ask_json(*common, "--model", tiny_video_ckpt, *CPU)
    remote = ask_json(*common, "--server", server.url)
    drop = ("timings",)
    assert {k: v for k, v in remote.items() if k not in drop} == {k: v for k, v in local.items() if k not in drop}
    text_local = run("ask", *common, "--model", tiny_video_ckpt, *CPU)
    monkeypatch.setenv("LLAMAVID_SERVER", server.url)  # the variable works as the flag does
    text_remote = run("ask", *common)
    assert text_remote.exit_code == 0 and text_remote.stdout == text_local.stdout
    outside = run("ask", files["secret"], QUESTION, "--max-new-tokens", 2)  # not allowed by path: uploaded
    assert outside.exit_code == 0, outside.stderr
    empty = run("ask", files["clip"], " ", "--json")
    assert empty.exit_code == 2 and json.loads(empty.stdout)["error"]["type"] == "UsageError"


def test_evidence_travels_through_the_server(server, files, tiny_video_ckpt, monkeypatch):
    monkeypatch.setenv("LLAMAVID_API_KEY", KEY)
    common = [files["clip"], QUESTION, "-t", 0, "--max-new-tokens", 4, "--moments", 2]
    local = ask_json(*common, "--model", tiny_video_ckpt, *CPU)
    remote = ask_json(*common, "--server", server.url)
    assert len(remote["evidence"]["moments"]) <= 2
    assert remote["evidence"]["moments"] == local["evidence"]["moments"]
    for near, far in zip(remote["evidence"]["frames"], local["evidence"]["frames"]):
        assert near["time"] == far["time"] and abs(near["score"] - far["score"]) < 1e-5
    monkeypatch.setenv("NO_COLOR", "1")
    shown = run("ask", *common, "--server", server.url)
    assert shown.exit_code == 0 and "Moments" in shown.stderr and "Evidence" in shown.stderr
    status, body = post(server, {"messages": [user(video_part(files["clip"]))], "max_tokens": 2, "evidence": True})
    assert status == 200 and abs(sum(f["score"] for f in body["llamavid"]["evidence"]["frames"]) - 1) < 1e-6


def test_summarize_and_chat_server(server, files, tiny_video_ckpt, monkeypatch, tmp_path):
    monkeypatch.setenv("LLAMAVID_API_KEY", KEY)
    common = [files["clip"], "-t", 0, "--max-new-tokens", 3]
    local = run("summarize", *common, "--model", tiny_video_ckpt, *CPU)
    remote = run("summarize", *common, "--server", server.url)
    assert remote.exit_code == 0 and remote.stdout == local.stdout
    questions = f"{QUESTION}\n/save {tmp_path / 'h.json'}\n"
    chat = CliRunner().invoke(app, ["chat", *map(str, common), "--server", server.url], input=questions)
    assert chat.exit_code == 0, chat.stderr
    saved = json.loads((tmp_path / "h.json").read_text())
    assert saved[0][0] == QUESTION and chat.stdout.strip() == saved[0][1]


def test_a_server_that_is_not_there_is_one_line_and_exit_1(files):
    result = run("ask", files["clip"], QUESTION, "--server", "http://127.0.0.1:1")
    assert result.exit_code == 1 and "cannot reach the llamavid server" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_media_folder_that_is_not_there(tmp_path):
    result = run("serve", "--allowed-media-path", tmp_path / "nope")
    assert result.exit_code == 2 and "is not a folder" in result.stderr
