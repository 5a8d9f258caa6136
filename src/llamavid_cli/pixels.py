"""Frames → normalised pixel tensors for the vision tower (method.md §3).

The reference path is CLIP's image processor as the released checkpoints shipped it: convert
to RGB, resize with PIL's bicubic filter on 8-bit values so the shorter side is S (the
longer side becomes int(S·long/short), floored), centre-crop S×S, scale to [0, 1] and
normalise with CLIP's mean and std. Still images are first padded to a square with the
mean colour (LLaVA's `expand2square`, `image_aspect_ratio: "pad"`).

`resize_and_crop` is that definition, a plain PIL call. `crop_resize` gives the same bytes
(PIL's own fixed-point arithmetic, redone) while computing only the pixels the crop keeps;
video frames take it (`video.FrameScaler`), since the crop of a 16:9 frame discards 44 % of
the resized width and a frame is resized once per sampled second.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import PIL
import torch
from PIL import Image

# OpenAI CLIP's normalisation constants, as in the shipped processor config (method.md §3).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Patch size of the EVA-ViT-G tower (method.md §2): the tower sees (S / 14)² patches.
PATCH_SIZE = 14

# Colour used to pad still images: int(m · 255) per channel of CLIP_MEAN → (122, 116, 104).
PAD_COLOR = tuple(int(m * 255) for m in CLIP_MEAN)


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(new_height, new_width) with the shorter side = size, the longer floored.

    Same arithmetic as transformers' `get_resize_output_image_size(..., default_to_square=False)`:
    `int(size * long / short)`; a square stays square.
    """
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central size×size window of an H×W×C array (top = (h−S)//2, left = (w−S)//2).

    Returns a copy, so a crop never keeps a larger frame buffer alive.
    """
    h, w = image.shape[:2]
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from a {w}x{h} image")
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size].copy()


def resize_and_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The reference resize: PIL bicubic on 8-bit RGB, shorter side → size, centre crop.

    image: uint8 [H, W, 3]. Returns uint8 [size, size, 3].
    """
    _check_rgb(image)
    new_h, new_w = resized_shape(image.shape[0], image.shape[1], size)
    resized = Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BICUBIC)
    return center_crop(np.asarray(resized), size)


def crop_resize(image: np.ndarray, size: int) -> np.ndarray:
    """`resize_and_crop(image, size)`, byte for byte, computing only what the crop keeps.

    One-off form of `CropResizer`, which also keeps its work buffers between calls.
    """
    return CropResizer(size)(image)


class CropResizer:
    """Exact `resize_and_crop` to `size`, for many images of the same shape (video frames).

    PIL's bicubic resize (Pillow `src/libImaging/Resample.c`) is separable and integer:
    per output pixel, weights from the full image's geometry in double precision, rounded
    to 22-bit fixed point; one pass along each axis, each sum rounded and clipped to 8 bits
    before the next pass (horizontal first, except as `_vertical_first` says). Here both
    passes use exactly those integer weights (`pil_coefficients`), but only for the output
    columns and rows inside the crop, as banded matrix products in float64: every product
    and partial sum is an integer below 2^53, so the result is exact in any summation order.

    Takes uint8 [H, W, 3] with any strides (a rotated or flipped view: only the window the
    crop needs is copied); returns a new uint8 [size, size, 3]. The float64 copy of that
    window (about 28 MiB for 1080p) is kept for the next image of the same shape.
    """

    def __init__(self, size: int):
        self.size = size
        self._shape: tuple[int, int] | None = None
        self._buffers: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        _check_rgb(image)
        h, w = image.shape[:2]
        size = self.size
        new_h, new_w = resized_shape(h, w, size)
        top, left = (new_h - size) // 2, (new_w - size) // 2
        rows = _band(h, new_h, top, top + size)  # None: that axis keeps its size (PIL skips the pass)
        cols = _band(w, new_w, left, left + size)
        y0, y1 = (rows.first, rows.stop) if rows else (top, top + size)
        x0, x1 = (cols.first, cols.stop) if cols else (left, left + size)
        down_first = rows is not None and cols is not None and _vertical_first(w, h, new_w, new_h)
        if self._shape != (h, w) or self._buffers is None:
            between = (3, size, x1 - x0) if down_first else (3, y1 - y0, size)
            self._buffers = tuple(
                torch.empty(shape, dtype=torch.float64) for shape in ((3, y1 - y0, x1 - x0), between, (3, size, size))
            )
            self._shape = (h, w)
        window, between, result = self._buffers
        with _one_thread():
            window.numpy()[...] = image[y0:y1, x0:x1].transpose(2, 0, 1)  # planar: [3, rows, columns]
            if down_first:
                _down(window, rows, y0, between)
                _across(between, cols, x0, result)
            elif cols is not None:
                _across(window, cols, x0, between if rows is not None else result)
                if rows is not None:
                    _down(between, rows, y0, result)
            elif rows is not None:
                _down(window, rows, y0, result)
            else:
                result = window
            return result.to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def pad_to_square(image: np.ndarray) -> np.ndarray:
    """Pad to a square, image centred, the rest filled with PAD_COLOR (LLaVA's expand2square).

    As in the original, a wide image is pasted at (x=0, y=(w−h)//2) and a tall one at
    (x=(h−w)//2, y=0). image: uint8 [H, W, 3]; a square image is returned unchanged.
    """
    _check_rgb(image)
    h, w = image.shape[:2]
    if h == w:
        return image
    side = max(h, w)
    out = np.empty((side, side, 3), dtype=np.uint8)
    out[...] = PAD_COLOR
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = image
    return out


def normalize(
    batch: np.ndarray | torch.Tensor,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 [N, S, S, 3] → (x/255 − mean) / std as [N, 3, S, S] on `device` in `dtype`.

    The uint8 batch is moved first and converted on the device (4× less to transfer than
    float32); the arithmetic runs in float32 and is cast to `dtype` at the end.
    """
    pixels = torch.as_tensor(batch)
    if pixels.dtype != torch.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"expected uint8 [N, S, S, 3], got {pixels.dtype} {list(pixels.shape)}")
    device = torch.device(device)
    pixels = pixels.to(device, non_blocking=device.type == "cuda")
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    x = pixels.permute(0, 3, 1, 2).to(torch.float32) / 255.0  # [N, 3, S, S]
    return ((x - mean) / std).to(dtype).contiguous()


def _check_rgb(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"expected a uint8 [H, W, 3] array, got {type(image).__name__} {shape}")


# --------------------------------------------------------------------------------------------
# PIL's bicubic resampling, redone (Pillow src/libImaging/Resample.c, 8 bits per channel)

_PIL_MAJOR = int(PIL.__version__.split(".")[0])
_PRECISION_BITS = 32 - 8 - 2  # PIL's fixed point: 22 fraction bits, 2 spare for overshoot
_HALF = float(1 << (_PRECISION_BITS - 1))  # each sum starts at one half, so >> rounds
_ONE = float(1 << _PRECISION_BITS)
_SUPPORT = 2.0  # bicubic filter support, in input pixels at scale 1
_BLOCK = 32  # output pixels per banded product (fastest of 8, 16, 24, 32 at 1080p)


def _bicubic(x: np.ndarray) -> np.ndarray:
    """PIL's bicubic_filter (a = −0.5), with its operations in its order."""
    a = -0.5
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@functools.lru_cache(maxsize=32)
def pil_coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PIL's resampling weights for in_size → out_size over the whole axis.

    Returns (first, count, weights): output pixel j reads inputs first[j] … first[j]+count[j]−1
    with integer weights weights[j, :count[j]] (the rest are 0), as `precompute_coeffs`
    followed by `normalize_coeffs_8bpc` make them: double precision, the same operations in
    the same order (so the doubles, and the rounding of each to 22 bits, agree exactly).
    """
    scale = float(in_size) / out_size  # (double)(in1 - in0) / outSize with the full box
    filterscale = max(scale, 1.0)
    support = _SUPPORT * filterscale
    ksize = math.ceil(support) * 2 + 1
    center = 0.0 + (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    ss = 1.0 / filterscale
    first = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)  # C's (int) truncates
    count = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size) - first
    taps = np.arange(ksize)
    inside = taps[None, :] < count[:, None]
    w = _bicubic(((taps[None, :] + first[:, None]).astype(np.float64) - center[:, None] + 0.5) * ss)
    w = np.where(inside, w, 0.0)
    total = np.zeros(out_size)
    for t in range(ksize):  # ww += w, tap by tap, as the C loop sums
        total = total + w[:, t]
    w = np.where(total[:, None] != 0.0, w / np.where(total == 0.0, 1.0, total)[:, None], w)
    fixed = np.where(w < 0, np.trunc(-0.5 + w * _ONE), np.trunc(0.5 + w * _ONE))
    return first, count, np.where(inside, fixed, 0.0).astype(np.int64)


@dataclass(frozen=True)
class _Band:
    """One pass restricted to outputs [lo, hi): inputs first…stop−1, and banded weight blocks."""

    first: int
    stop: int
    blocks: tuple[tuple[int, int, int, int, torch.Tensor], ...]  # (in0, in1, out0−lo, out1−lo, [n, in1−in0])


@functools.lru_cache(maxsize=32)
def _band(in_size: int, out_size: int, lo: int, hi: int) -> _Band | None:
    if in_size == out_size:
        return None  # PIL leaves an axis of unchanged size alone
    first, count, weights = pil_coefficients(in_size, out_size)
    blocks = []
    for o0 in range(lo, hi, _BLOCK):
        o1 = min(o0 + _BLOCK, hi)
        i0, i1 = int(first[o0]), int((first[o0:o1] + count[o0:o1]).max())
        dense = np.zeros((o1 - o0, i1 - i0))
        for j in range(o0, o1):
            n = int(count[j])
            dense[j - o0, first[j] - i0 : first[j] - i0 + n] = weights[j, :n]
        blocks.append((i0, i1, o0 - lo, o1 - lo, torch.from_numpy(dense)))
    return _Band(int(first[lo]), int((first[lo:hi] + count[lo:hi]).max()), tuple(blocks))


def _across(src: torch.Tensor, band: _Band, first: int, out: torch.Tensor) -> None:
    """Horizontal pass: out[c, y, j] = clip8(Σ_x src[c, y, x − first] · w[j, x]), in place."""
    flat, sums = src.view(-1, src.shape[-1]), out.view(-1, out.shape[-1])
    for i0, i1, o0, o1, weights in band.blocks:
        sums[:, o0:o1] = flat[:, i0 - first : i1 - first] @ weights.T
    _to_8bit(out)


def _down(src: torch.Tensor, band: _Band, first: int, out: torch.Tensor) -> None:
    """Vertical pass: out[c, i, x] = clip8(Σ_y w[i, y] · src[c, y − first, x]), in place."""
    for i0, i1, o0, o1, weights in band.blocks:
        out[:, o0:o1] = torch.matmul(weights, src[:, i0 - first : i1 - first])
    _to_8bit(out)


def _vertical_first(in_w: int, in_h: int, out_w: int, out_h: int) -> bool:
    """Whether PIL runs the vertical pass first (the order changes the 8-bit rounding between).

    Pillow before 13 always went horizontal first. Pillow 13 (python-pillow/Pillow#9549)
    goes vertical first when the height shrinks by more than twice as many pixels as the
    width, i.e. for images over 2:1 tall, and never when upscaling the height; this rule was
    read off Pillow 13.0's results on 1,500 random sizes, and tests/test_pixels.py checks it
    against the installed PIL.
    """
    return _PIL_MAJOR >= 13 and out_h < in_h and in_h - out_h > 2 * (in_w - out_w)


def _to_8bit(sums: torch.Tensor) -> None:
    """In place: PIL's clip8 of each fixed-point sum, (sum + ½) >> 22 clamped to 0…255."""
    sums.add_(_HALF).mul_(1.0 / _ONE).floor_().clamp_(0, 255)


class _OneThread:
    """Run torch single-threaded inside: these products are small, and a second intra-op
    thread spinning beside the video decoder's own threads doubled the CPU time for nothing.
    The thread count is process-wide, so callers on several threads share one saved value:
    the first one in sets 1, the last one out restores it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        self._saved = 1

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._inside == 0:
                self._saved = torch.get_num_threads()
                if self._saved != 1:
                    torch.set_num_threads(1)
            self._inside += 1
        try:
            yield
        finally:
            with self._lock:
                self._inside -= 1
                if self._inside == 0 and self._saved != 1:
                    torch.set_num_threads(self._saved)


_one_thread = _OneThread()
