"""Test isolation and tiny LLaMA-VID checkpoints (no network, ever).

huggingface_hub reads HF_HOME / HF_HUB_OFFLINE once, when it is first imported, so the
session's hub cache is created and exported here at import time, before any test module
can import transformers or huggingface_hub; the autouse fixture re-asserts it per test.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import checkpoint_factory as factory  # noqa: E402

_SESSION_HF_HOME = Path(tempfile.mkdtemp(prefix="llamavid-tests-hf-"))

# variables that would send the hub cache somewhere else than HF_HOME/hub
_HUB_CACHE_OVERRIDES = (
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "TRANSFORMERS_CACHE",
    "HF_ASSETS_CACHE",
    "HF_XET_CACHE",
)

os.environ["HF_HOME"] = str(_SESSION_HF_HOME)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
for _name in _HUB_CACHE_OVERRIDES:
    os.environ.pop(_name, None)

_UNSET = (
    "LLAMAVID_MODEL",
    "LLAMAVID_DEVICE",
    "LLAMAVID_DTYPE",
    "LLAMAVID_EVA_WEIGHTS",
    "NO_COLOR",
    "FORCE_COLOR",
) + _HUB_CACHE_OVERRIDES


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires_cuda: needs a CUDA GPU")
    config.addinivalue_line("markers", "slow: longer end-to-end tests")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_SESSION_HF_HOME, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(item.get_closest_marker("requires_cuda") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is false)")
    for item in items:
        if item.get_closest_marker("requires_cuda"):
            item.add_marker(skip)


# --------------------------------------------------------------------------------------
# isolation
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def hf_home() -> Path:
    """The session's HF_HOME: an offline hub cache that starts empty (the BERT vocabulary ships
    with the package, so loading a local checkpoint needs nothing from it)."""
    return _SESSION_HF_HOME


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory, hf_home: Path):
    root = tmp_path_factory.mktemp("env")
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for name, sub in (
        ("LLAMAVID_CACHE_DIR", "llamavid-cache"),
        ("LLAMAVID_CONFIG_DIR", "llamavid-config"),
        ("LLAMAVID_DATA_DIR", "llamavid-data"),
        ("XDG_CACHE_HOME", "xdg-cache"),
        ("XDG_CONFIG_HOME", "xdg-config"),
        ("XDG_DATA_HOME", "xdg-data"),
    ):
        monkeypatch.setenv(name, str(root / sub))
    for name in _UNSET:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "100")

    # in case huggingface_hub was imported before this conftest (a plugin), fix its constants too
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        monkeypatch.setattr(constants, "HF_HOME", str(hf_home), raising=False)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"), raising=False)
        monkeypatch.setattr(constants, "HF_ASSETS_CACHE", str(hf_home / "assets"), raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True, raising=False)
    yield


# --------------------------------------------------------------------------------------
# tiny checkpoints (written once per session; treat as read-only)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_video_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Short-video model, compress_type "mean", fp32, 2 shards, seed 0."""
    return factory.write_checkpoint(tmp_path_factory.mktemp("ckpt") / "llama-vid-tiny-video", kind="video")


@pytest.fixture(scope="session")
def tiny_grid_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Short-video model with compress_type "grid:2" (4 content tokens per frame)."""
    return factory.write_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "llama-vid-tiny-grid", kind="video", compress_type="grid:2", seed=1
    )


@pytest.fixture(scope="session")
def tiny_long_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Long-video model: linear RoPE x16, max_token 65536, compress_type "mean_concat"."""
    return factory.write_checkpoint(tmp_path_factory.mktemp("ckpt") / "llama-vid-tiny-long", kind="long", seed=2)


@pytest.fixture(scope="session")
def tiny_image_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Image model at 224 px: no compress_type (every patch is a content token)."""
    return factory.write_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "llama-vid-tiny-image",
        kind="image",
        compress_type=None,
        seed=3,
        image_size=224,
    )


@pytest.fixture(scope="session")
def tiny_eva_pth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LAVIS-style eva_vit_g.pth with the same tower values as tiny_video_ckpt (seed 0) plus one extra block."""
    return factory.write_eva_vit_g(tmp_path_factory.mktemp("eva") / "eva_vit_g.pth", seed=0)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty HF_HOME for this test only (its hub/ folder does not exist yet), so what a test
    installs there cannot leak into the session's cache."""
    from huggingface_hub import constants

    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_ASSETS_CACHE", str(home / "assets"))
    return home


@pytest.fixture
def decode_counter(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the frames the decoder outputs (chosen or not), for tests of how much is decoded."""
    from llamavid_cli import video

    count = {"frames": 0}
    original = video._decoded

    def counting(*args):
        for frame in original(*args):
            count["frames"] += 1
            yield frame

    monkeypatch.setattr(video, "_decoded", counting)
    return count
