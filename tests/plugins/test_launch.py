"""Launch-parameter arithmetic: plain functions, no Triton needed."""

import pytest

from seo_plugins.launch import (
    AOT_MAX_BLOCK_L,
    AOT_SHARED_LIMIT,
    KEY_SPLIT_MIN_BLOCKS,
    LandmarkLaunch,
    LocalWindowLaunch,
    eval_shape_expr,
    grid_expressions,
    landmark_grid,
    landmark_launch,
    landmark_stages_launch,
    local_window_grid,
    local_window_launch,
    local_window_shared_estimate,
    next_power_of_2,
    padded_head_dim,
)

SHAPES = [dict(B=1, H=1, S=1), dict(B=2, H=3, S=37), dict(B=32, H=12, S=4096), dict(B=1, H=16, S=32769)]


@pytest.mark.parametrize("head_dim,padded", [(1, 16), (8, 16), (16, 16), (24, 32), (64, 64), (80, 128), (128, 128)])
def test_head_dim_padding_is_a_power_of_two_of_at_least_16(head_dim, padded):
    assert padded_head_dim(head_dim) == padded


def test_next_power_of_2():
    assert [next_power_of_2(n) for n in (0, 1, 2, 3, 4, 5, 64, 65)] == [1, 1, 2, 4, 4, 8, 64, 128]


@pytest.mark.parametrize("left,right", [(0, 0), (3, 0), (4, 4), (64, 64), (127, 0), (1000, 1000)])
@pytest.mark.parametrize("head_dim", [8, 64, 256])
@pytest.mark.parametrize("elem_bytes", [2, 4])
def test_local_window_tiles(left, right, head_dim, elem_bytes):
    launch = local_window_launch(head_dim, left, right, elem_bytes)
    for block in (launch.block_m, launch.block_n, launch.block_d):
        assert block >= 16 and block == next_power_of_2(block), "tl.dot tiles: powers of two >= 16"
    assert launch.block_m <= 64 and launch.block_n <= launch.block_m
    assert launch.block_m >= min(64, left + right + 1) or launch.block_n == 16, \
        "a tile spans the band (up to 64 rows) unless shared memory made it smaller"
    assert launch.block_d >= head_dim
    assert launch.num_warps in (1, 2, 4, 8) and launch.num_stages in (1, 2)
    smallest = (launch.block_m, launch.block_n, launch.num_stages) == (16, 16, 1)
    assert local_window_shared_estimate(launch, elem_bytes) <= AOT_SHARED_LIMIT or smallest


def test_tiles_shrink_for_fp32_and_wide_heads():
    """Key tiles first, then query tiles, then pipeline stages (the compiled figures are checked in test_ptxas)."""
    tiles = lambda launch: (launch.block_m, launch.block_n, launch.num_stages)  # noqa: E731
    assert tiles(local_window_launch(64, 64, 64, 2)) == (64, 64, 2)
    assert tiles(local_window_launch(64, 64, 64, 4)) == (64, 16, 2)
    assert tiles(local_window_launch(128, 64, 64, 2)) == (64, 16, 2)
    assert tiles(local_window_launch(256, 64, 64, 2)) == (16, 16, 2)
    assert tiles(local_window_launch(256, 64, 64, 4)) == (16, 16, 1)


def test_score_tiles_get_enough_warps_not_to_spill():
    """FP16 64 x 64 tiles spilled on sm_80 with 4 warps (ptxas); the score tile counts twice."""
    assert local_window_launch(64, 64, 64, 2).num_warps == 8
    assert local_window_launch(64, 64, 64, 4).num_warps == 4
    assert local_window_launch(64, 3, 0, 2).num_warps == 1


def test_landmark_tiles_hold_every_landmark():
    for landmarks in (1, 7, 16, 33, 64, 128):
        for elem_bytes in (2, 4):
            tiles = landmark_stages_launch(64, landmarks, elem_bytes)
            assert tiles.block_l >= max(16, landmarks) and tiles.block_l == next_power_of_2(tiles.block_l)
            assert tiles.num_warps in (4, 8) and tiles.pinv_warps in (4, 8, 16)
            if tiles.block_l <= AOT_MAX_BLOCK_L:
                aot = landmark_launch(64, landmarks, elem_bytes)
                assert aot.block_l == tiles.block_l and 16 <= aot.block_s <= 64 and aot.means_step >= 1


def test_landmark_aot_refuses_more_landmarks_than_fit_48_kib():
    with pytest.raises(ValueError, match="aot=0"):
        landmark_launch(64, AOT_MAX_BLOCK_L + 1)


@pytest.mark.parametrize("batch,heads,seq", [(1, 1, 1), (3, 1, 100), (1, 12, 4096), (4, 12, 32768), (1, 1, 32768)])
def test_landmark_key_splits_cover_the_sequence(batch, heads, seq):
    tiles = landmark_stages_launch(64, 64)
    splits, per_split = tiles.key_splits(batch, heads, seq)
    assert per_split % tiles.block_n == 0 and per_split >= min(seq, KEY_SPLIT_MIN_BLOCKS * tiles.block_n) // 2
    assert (splits - 1) * per_split < seq <= splits * per_split or seq == 1 and splits == 1
    grids = tiles.grids(batch, heads, seq)
    assert list(grids) == ["means", "keys", "pinv", "queries"]
    segments, step = tiles.means_tiles(seq)
    assert grids["means"][0] * segments >= 64 and step >= 1 and grids["keys"] == (splits, batch * heads, 1)
    assert grids["queries"] == (-(-seq // tiles.block_m), batch * heads, 1)


def test_bad_launch_arguments():
    with pytest.raises(ValueError):
        local_window_launch(64, -1, 0)
    with pytest.raises(ValueError):
        landmark_launch(64, 0)
    with pytest.raises(ValueError):
        padded_head_dim(0)


def test_grids():
    assert local_window_grid(2, 3, 37, 16) == (3, 6, 1)
    assert local_window_grid(1, 1, 64, 64) == (1, 1, 1)
    assert local_window_grid(1, 1, 65, 64) == (2, 1, 1)
    assert landmark_grid(2, 3, 37) == (6, 1, 1)
    with pytest.raises(ValueError, match="grid limit"):
        local_window_grid(1024, 65, 16, 16)


@pytest.mark.parametrize(
    "launch", [local_window_launch(64, 64, 64), local_window_launch(8, 3, 0, 4), landmark_launch(64, 32)]
)
def test_grid_expressions_match_the_python_grid(launch):
    exprs = grid_expressions(launch)
    assert len(exprs) == 3
    for shapes in SHAPES:
        expected = launch.grid(shapes["B"], shapes["H"], shapes["S"])
        assert tuple(eval_shape_expr(e, shapes) for e in exprs) == expected


def test_grid_expression_text():
    assert grid_expressions(LocalWindowLaunch(64, 64, 64, 4, 2)) == ["cdiv(S, 64)", "B * H", "1"]
    assert grid_expressions(LandmarkLaunch(64, 64, 64, 8, 1)) == ["B * H", "1", "1"]


def test_grid_functions_accept_another_cdiv():
    """A TensorRT aot_impl passes its own shape expressions and trtp.cdiv; any cdiv works."""
    calls = []

    def recording_cdiv(a, b):
        calls.append((a, b))
        return -(-a // b)

    assert local_window_launch(64, 64, 64).grid(2, 4, 130, recording_cdiv) == (3, 8, 1)
    assert calls == [(130, 64)]


@pytest.mark.parametrize("text", ["__import__('os')", "S ** 2", "open('x')", "S.bit_length()", "X + 1", "1.5"])
def test_shape_expressions_only_allow_arithmetic_on_shapes(text):
    with pytest.raises(ValueError):
        eval_shape_expr(text, dict(B=1, H=1, S=1))
