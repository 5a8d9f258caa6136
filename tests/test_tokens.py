"""Context and content tokens (method.md §5.2–5.4), checked against plain loops written here."""

import math

import pytest
import torch
from torch import nn

from llamavid_cli.config import Compress
from llamavid_cli.model.tokens import content_tokens, context_tokens, interleave, pool_patches


def assert_close(actual, expected, tol=1e-5):
    diff = (actual - expected).abs()
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert diff.max() <= tol * (1 + expected.abs().max()), f"max diff {diff.max():.3g}, mean {diff.mean():.3g}"


@pytest.fixture
def parts():
    g = torch.Generator().manual_seed(0)
    frames, queries, patches, width, hidden = 3, 4, 16, 8, 6
    q = torch.randn(frames, queries, width, generator=g)
    x = torch.randn(frames, patches, width, generator=g)
    key = nn.Linear(width, width)
    val = nn.Linear(width, hidden)
    with torch.no_grad():
        for p in [*key.parameters(), *val.parameters()]:
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return q, x, key, val


@torch.no_grad()
def test_context_token_is_query_attention_over_raw_patches(parts):
    q, x, key, val = parts
    got = context_tokens(q, x, key, val)
    expected = []
    for f in range(x.shape[0]):
        pooled = torch.zeros(x.shape[-1])
        for i in range(q.shape[1]):
            scores = torch.tensor([q[f, i] @ key(x[f, p]) / math.sqrt(x.shape[-1]) for p in range(x.shape[1])])
            weights = scores.softmax(0)
            pooled += sum(weights[p] * x[f, p] for p in range(x.shape[1])) / q.shape[1]  # values: raw patches
        expected.append(val(pooled))
    assert_close(got, torch.stack(expected)[:, None])


def test_context_token_uses_raw_patches_not_keys_as_values(parts):
    q, x, key, val = parts
    wrong_values = (q @ key(x).transpose(-1, -2) / math.sqrt(x.shape[-1])).softmax(-1) @ key(x)
    assert not torch.allclose(context_tokens(q, x, key, val), val(wrong_values.mean(1))[:, None], atol=1e-4)


def test_mean_content_token_is_projected_patch_mean(parts):
    _, x, _, val = parts
    got = content_tokens(x, Compress.MEAN, None, val)
    expected = torch.stack([val(x[f].sum(0) / x.shape[1]) for f in range(x.shape[0])])[:, None]
    assert_close(got, expected)


def test_grid2_pools_each_quadrant_of_the_patch_grid_row_major():
    # 4×4 grid of patches, width 1, value = patch index
    x = torch.arange(16.0).reshape(1, 16, 1)
    pooled = pool_patches(x, Compress.GRID, 2)
    grid = x.reshape(4, 4)
    expected = [grid[:2, :2].mean(), grid[:2, 2:].mean(), grid[2:, :2].mean(), grid[2:, 2:].mean()]
    assert pooled.flatten().tolist() == pytest.approx([float(v) for v in expected])


def test_grid_content_tokens_count_is_n_squared(parts):
    _, x, _, val = parts  # 16 patches → 4×4 grid
    assert content_tokens(x, Compress.GRID, 2, val).shape == (3, 4, 6)
    assert content_tokens(x, Compress.GRID, 4, val).shape == (3, 16, 6)


def test_no_compression_keeps_every_patch(parts):
    _, x, _, val = parts
    assert_close(content_tokens(x, Compress.NONE, None, val), val(x))


def test_tokens_are_ordered_context_then_content_per_frame():
    context = torch.tensor([[[1.0]], [[2.0]]])  # 2 frames, 1 token, width 1
    content = torch.tensor([[[10.0], [11.0]], [[20.0], [21.0]]])  # 2 content tokens each
    assert interleave(context, content).flatten().tolist() == [1, 10, 11, 2, 20, 21]
