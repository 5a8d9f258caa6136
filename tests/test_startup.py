"""Start-up and the error boundary: the CLI starts like a CLI and never ends in a traceback.

The light commands run in a subprocess under `python -X importtime`, whose stderr names every
module the process imported; signals are sent when the process's own output says it has
reached the phase under test, never after a fixed sleep.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import media
from llamavid_cli import settings
from llamavid_cli.cli.app import app

CPU = ["--device", "cpu", "--dtype", "float32"]
HEAVY = (
    "torch",
    "transformers",
    "av",
    "numpy",
    "PIL",
    "safetensors",
    "tokenizers",
    "sentencepiece",
    "huggingface_hub",
    "fastapi",
    "uvicorn",
)
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| ( *)(\S+)$")
ROOT = Path(__file__).resolve().parents[1]


def run(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def llamavid(*args):
    """The real entry point (`python -m llamavid_cli` runs cli.entry.main), imports on stderr."""
    return [sys.executable, "-X", "importtime", "-m", "llamavid_cli", *map(str, args)]


def split_stderr(stderr: str) -> tuple[set[str], list[str]]:
    """(top-level packages imported, the program's own stderr lines)."""
    imported, lines = set(), []
    for line in stderr.splitlines():
        match = IMPORT_LINE.match(line)
        if match:
            imported.add(match.group(2).split(".")[0])
        elif not line.startswith("import time:"):
            lines.append(line)
    return imported, lines


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return media.make_video(tmp_path_factory.mktemp("media") / "clip.mp4", seconds=4, fps=10, width=96, height=64)


# --- start-up without the heavy stack ------------------------------------------------------


def test_importing_the_cli_loads_no_heavy_library():
    code = f"import sys, json, llamavid_cli.cli.app; print(json.dumps(sorted(set(sys.modules) & set({HEAVY!r}))))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def _one_entry_cache(folder: Path, tiny_video_ckpt, clip) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    result = run("encode", clip, "--model", tiny_video_ckpt, "-o", folder / "x.vidtok", *CPU)
    assert result.exit_code == 0, result.stderr


# typer >= 0.24 coerces values with pydantic (~120 ms of imports, more than typer and rich): the
# commands that coerce no value must not pay for it (cli/coercion.py); the others need its messages
@pytest.mark.parametrize(
    "args, code, needs_entry, pydantic",
    [
        (["--help"], 0, False, False),
        (["--version"], 0, False, False),
        (["cache", "list"], 0, False, False),
        (["cache", "list"], 0, True, False),
        (["models", "list"], 0, False, False),
        (["info", "/nonexistent/clip.vidtok"], 2, False, True),
        (["ask"], 2, False, False),
        (["ask", "v.mp4", "who", "is", "the", "villain"], 2, False, True),
        (["encode", "v.mp4", "--fps", "fast"], 2, False, True),
    ],
    ids=[
        "help",
        "version",
        "cache list",
        "cache list (one entry)",
        "models list",
        "info missing",
        "usage error",
        "unquoted question",
        "bad option value",
    ],
)
def test_light_commands_never_import_torch(args, code, needs_entry, pydantic, tiny_video_ckpt, clip, tmp_path):
    if needs_entry:  # reading a cached encode's header must not pull in torch either
        _one_entry_cache(Path(os.environ["LLAMAVID_CACHE_DIR"]), tiny_video_ckpt, clip)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf")}  # no model cached
    done = subprocess.run(llamavid(*args), capture_output=True, text=True, timeout=120, env=env)
    imported, lines = split_stderr(done.stderr)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    allowed = set()
    if needs_entry:
        allowed |= {"safetensors", "numpy"}  # a header is read with safetensors' numpy backend
    if args[0] == "models":
        allowed |= {"huggingface_hub"}  # where the hub cache is
        assert imported & {"httpx", "httpx2"} == set()  # its scan (and HTTP stack) only when a model is there
    assert imported & set(HEAVY) - allowed == set(), f"{' '.join(args)} imported {sorted(imported & set(HEAVY))}"
    if not pydantic:
        assert "pydantic" not in imported
    if needs_entry:
        assert "1 entry," in done.stdout


def test_a_command_imports_no_other_command_module():
    """app.COMMANDS names modules, imported when their command is resolved: `cache list` reads one."""
    from llamavid_cli.cli.app import COMMANDS

    modules = {f"llamavid_cli.cli.{where.split(':')[0]}" for where in COMMANDS.values() if isinstance(where, str)}
    code = (
        "import json, sys\n"
        "from llamavid_cli.cli.app import app\n"
        "try:\n    app(['cache', 'list'], prog_name='llamavid')\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    assert "llamavid_cli.cli.cache_cmd" in loaded
    assert loaded & modules == set()


def test_shell_completion_answers_without_the_heavy_stack():
    env = {**os.environ, "_LLAMAVID_COMPLETE": "complete_bash", "COMP_WORDS": "llamavid su", "COMP_CWORD": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            "import sys; sys.argv[0] = 'llamavid'; from llamavid_cli.cli.entry import main; main()",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    imported, _ = split_stderr(done.stderr)
    assert done.returncode == 0, done.stderr
    assert "summarize" in done.stdout
    assert imported & {*HEAVY, "pydantic"} == set()


# --- Ctrl-C, whenever it lands --------------------------------------------------------------


def interruptible() -> None:
    """In the child: Ctrl-C as a shell's foreground job gets it, even when pytest itself was started
    in the background (`cmd &` makes a non-interactive shell ignore SIGINT, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _signal_after(cmd, ready, timeout=120, env=None):
    """Start `cmd`, send SIGINT once a stderr line satisfies `ready`, return (rc, stderr)."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=interruptible
    )
    lines = []
    deadline = time.monotonic() + timeout
    try:
        for line in proc.stderr:
            lines.append(line)
            if ready(line):
                proc.send_signal(signal.SIGINT)
                break
            assert time.monotonic() < deadline, "never reached the phase under test"
        else:
            pytest.fail("the process ended before it reached the phase under test:\n" + "".join(lines))
        rest = proc.stderr.read()
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode, "".join(lines) + rest


def _after_entry():
    """True for the first import that follows the entry module: the CLI is importing typer."""
    state = {"entered": False}

    def ready(line):
        match = IMPORT_LINE.match(line.rstrip("\n"))
        if state["entered"] and match:
            return True
        state["entered"] |= bool(match and match.group(2) == "llamavid_cli.cli.entry")
        return False

    return ready


def test_ctrl_c_while_the_cli_imports_is_one_line_and_exit_130(tmp_path):
    for _attempt in range(5):
        code, stderr = _signal_after(llamavid("cache", "list"), _after_entry())
        _, lines = split_stderr(stderr)
        if code == 0:  # the whole command outran the signal: try again
            continue
        assert "Traceback" not in stderr
        assert (code, [line for line in lines if line.strip()]) == (130, ["Interrupted."]), stderr[-2000:]
        return
    pytest.fail("cache list always finished before the signal landed")


def test_ctrl_c_while_a_command_imports_torch_is_one_line_and_exit_130(clip, tiny_video_ckpt):
    def importing_torch(line):
        match = IMPORT_LINE.match(line.rstrip("\n"))
        return bool(match and match.group(2).startswith("torch."))

    code, stderr = _signal_after(
        llamavid("ask", clip, "Who is there?", "--model", tiny_video_ckpt, *CPU), importing_torch
    )
    _, lines = split_stderr(stderr)
    assert "Traceback" not in stderr
    assert code == 130 and [line for line in lines if line.strip()] == ["Interrupted."], stderr[-2000:]


# --- one line for every failure, JSON with --json, one rule for exit codes ------------------


_BROKEN_COMMAND = """
import sys
from llamavid_cli.cli.app import app

@app.command("boom")
def boom() -> None:
    raise RuntimeError("kaput")

from llamavid_cli.cli.entry import main

sys.argv = ["llamavid", "boom"]
main()
"""


def test_an_unexpected_failure_is_one_line_and_debug_shows_the_traceback():
    # A bug is, by definition, a path nothing wraps: a command that raises stands in for it, run
    # through the real app and entry point (the boundary is what is under test).
    result = subprocess.run([sys.executable, "-c", _BROKEN_COMMAND], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["Error: RuntimeError: kaput (set LLAMAVID_DEBUG=1 for details)"]
    debug = subprocess.run(
        [sys.executable, "-c", _BROKEN_COMMAND],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LLAMAVID_DEBUG": "1"},
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "RuntimeError: kaput" in debug.stderr


def _not_a_video(folder: Path) -> Path:
    path = folder / "notes.mp4"
    path.write_text("not a video\n")
    return path


def _junk_vidtok(folder: Path) -> Path:
    path = folder / "junk.vidtok"
    path.write_bytes(b"\x00" * 64)
    return path


# (arguments, exit code, has --json); "{clip}", "{ckpt}", "{tmp}" are filled in per test
EXIT_CODES = [
    (["ask"], 2, True),
    (["ask", "{clip}", "Who?", "--temperature", "-1"], 2, True),
    (["ask", "{tmp}/missing.mp4", "Who?"], 2, True),
    (["ask", "{notes}", "Who?", "--model", "{ckpt}", *CPU], 1, True),
    (["encode", "{clip}", "--fps", "fast"], 2, True),
    (["encode", "{tmp}/missing.mp4"], 2, True),
    (["encode", "{notes}", "--model", "{ckpt}", "-o", "{tmp}/x.vidtok", *CPU], 1, True),
    (["info", "{tmp}/missing.vidtok"], 2, True),
    (["info", "{junk}"], 1, True),
    (["summarize", "{tmp}/missing.mp4"], 2, True),
    (["summarize", "{clip}", "--format", "pdf"], 2, True),
    (["summarize", "{clip}", "--out-dir", "/proc/no-such-folder"], 2, True),
    (["chat", "{tmp}/missing.mp4"], 2, False),
    (["cache", "list", "--bogus"], 2, True),
    (["models", "pull", "not a model!"], 2, False),
    (["models", "rm", "vid-13b", "--yes"], 1, False),
    (["nosuchcommand"], 2, False),
]


@pytest.mark.parametrize("args, code, has_json", EXIT_CODES, ids=[" ".join(a[:3]) for a, _, _ in EXIT_CODES])
def test_exit_codes_follow_one_rule_and_json_gets_an_error_object(
    args, code, has_json, clip, tiny_video_ckpt, tmp_path
):
    fill = {
        "clip": clip,
        "ckpt": tiny_video_ckpt,
        "tmp": tmp_path,
        "notes": _not_a_video(tmp_path),
        "junk": _junk_vidtok(tmp_path),
    }
    args = [a.format(**fill) for a in args]
    plain = run(*args)
    assert plain.exit_code == code, plain.stderr
    assert "Traceback" not in plain.stderr and plain.stdout == ""
    assert "Error:" in plain.stderr
    if not has_json:
        return
    with_json = run(*args, "--json")
    assert with_json.exit_code == code, with_json.stderr
    error = json.loads(with_json.stdout)["error"]
    assert error["exit_code"] == code and error["message"] and error["type"]
    assert f"Error: {error['message']}" in with_json.stderr  # the same line still goes to stderr


def test_an_unquoted_question_gets_a_one_line_hint():
    result = run("ask", "v.mp4", "who", "is", "the", "villain")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        'Error: the question must be one argument; put it in quotes: llamavid ask v.mp4 "who is the villain"'
    ]


def test_a_question_that_is_not_utf8_is_asked_with_replacement_characters(clip, tiny_video_ckpt):
    # what Python makes of a shell argument holding the bytes b"who \xff\xfe is it?"
    question = b"who \xff\xfe is it?".decode("utf-8", "surrogateescape")
    options = ["--model", tiny_video_ckpt, "-t", 0, "--max-new-tokens", 2, "--json", *CPU]
    result = run("ask", clip, question, *options)
    assert result.exit_code == 0, result.stderr
    replaced = run("ask", clip, "who \ufffd\ufffd is it?", *options)
    assert json.loads(result.stdout)["prompt_ids"] == json.loads(replaced.stdout)["prompt_ids"]


# --- settings: a variable for every key, documented from the code ---------------------------


def _commands():
    import typer.main

    def walk(command, prefix):
        if hasattr(command, "list_commands"):
            for name in command.list_commands(None):
                yield from walk(command.get_command(None, name), f"{prefix} {name}")
        else:
            yield prefix, command

    return list(walk(typer.main.get_command(app), "llamavid"))


def test_every_settings_key_has_its_variable_on_every_option_it_names():
    found = set()
    for name, command in _commands():
        for param in command.params:
            if param.param_type_name == "option" and param.name in settings.KEYS:
                assert param.envvar == settings.env_var(param.name), f"{name} --{param.name}"
                found.add(param.name)
    assert found == set(settings.KEYS)


def test_sampling_and_generation_defaults_come_from_the_environment(clip, tiny_video_ckpt):
    env = {"LLAMAVID_FPS": "2", "LLAMAVID_MAX_NEW_TOKENS": "2", "LLAMAVID_TEMPERATURE": "0", "LLAMAVID_TOP_P": "0.5"}
    result = run("ask", clip, "Who?", "--model", tiny_video_ckpt, "--json", *CPU, env=env)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["frames"] == 8 and len(data["output_ids"]) <= 2  # 4 s at 2 fps
    flag = run("ask", clip, "Who?", "--model", tiny_video_ckpt, "--json", "--fps", "1", *CPU, env=env)
    assert json.loads(flag.stdout)["frames"] == 4  # a flag beats the variable
    bad = run("ask", clip, "Who?", "--model", tiny_video_ckpt, *CPU, env={"LLAMAVID_TOP_P": "2"})
    assert bad.exit_code == 2 and "LLAMAVID_TOP_P" in bad.stderr and "Traceback" not in bad.stderr


def test_the_config_file_sets_sampling_defaults_too(clip, tiny_video_ckpt):
    folder = Path(os.environ["LLAMAVID_CONFIG_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.toml").write_text("fps = 2\nmax_new_tokens = 2\ntemperature = 0.0\n")
    result = run("ask", clip, "Who?", "--model", tiny_video_ckpt, "--json", *CPU)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["frames"] == 8
    from_env = run("ask", clip, "Who?", "--model", tiny_video_ckpt, "--json", *CPU, env={"LLAMAVID_FPS": "1"})
    assert json.loads(from_env.stdout)["frames"] == 4  # the variable beats the file


def test_every_variable_the_sources_read_is_documented_in_the_man_page():
    source_text = "\n".join(p.read_text() for p in (ROOT / "src" / "llamavid_cli").rglob("*.py"))
    read = set(re.findall(r"\bLLAMAVID_[A-Z_]+[A-Z]\b", source_text))
    option_vars = {p.envvar for _, c in _commands() for p in c.params if getattr(p, "envvar", None)}
    assert read | option_vars <= set(settings.ENVIRONMENT), sorted((read | option_vars) - set(settings.ENVIRONMENT))
    page = (ROOT / "man" / "llamavid.1").read_text().replace("\\-", "-").replace("\\&", "")
    environment = page.split(".SH ENVIRONMENT", 1)[1].split(".SH FILES", 1)[0]
    files = page.split(".SH FILES", 1)[1].split(".SH EXIT STATUS", 1)[0]
    for name, text in settings.ENVIRONMENT.items():
        assert f"\\fB{name}\\fR\n{text}" in environment, name
    for name in settings.FILES:
        assert name in files, name


def test_the_quantize_hint_works_from_a_checkout_and_from_pypi(monkeypatch):
    from llamavid_cli.errors import UsageError
    from llamavid_cli.quantize import quantize_llm

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # what `import bitsandbytes` meets when it is absent
    with pytest.raises(UsageError) as caught:
        quantize_llm(None, "4bit")
    assert "pip install 'llamavid-cli[quant]'" in str(caught.value)
    assert "pip install -e '.[quant]'" in str(caught.value)
