"""The MiniCPM-V slicing rule (diagnostics/slicing.py) against sizes worked out by hand from the rule.

m = min(ceil(w*h / 448^2), max_slice_nums); m <= 1 -> one piece; else candidates {m-1, m, m+1} minus 1 and
anything above max; pick the (cols, rows) factor grid closest to log(w/h). Embeddings = (cols*rows + 1) * 64.
"""

from __future__ import annotations

import pytest

from diagnostics.families.minicpmv_slicing import find_best_resize, get_sliced_grid, slice_image

# (w, h, max_slice_nums, grid, slices incl. overview, embeddings) — each row computed by hand:
CASES = [
    # 448x4032: area = 9 * 448^2 -> m = 9; {8, 9}; (1, 9) matches 1:9 exactly
    (448, 4032, 9, (1, 9), 10, 640),
    # max 4: m = 4, {3, 4}; |log(1/9) - log(1/4)| = 0.81 < |log(1/9) - log(1/3)| = 1.10
    (448, 4032, 4, (1, 4), 5, 320),
    # 4032x448: the mirror image
    (4032, 448, 9, (9, 1), 10, 640),
    # 1000x700: 700000 / 200704 = 3.49 -> m = 4; (2, 2) error 0.357 beats (3, 1) 0.742 and (4, 1) 1.03
    (1000, 700, 9, (2, 2), 5, 320),
    # 2000x1500: 14.9 -> capped at 9; {8, 9}; (3, 3) error 0.288 beats (4, 2) 0.405
    (2000, 1500, 9, (3, 3), 10, 640),
    # 640x480: 1.53 -> m = 2; {2, 3}; (2, 1) error 0.405 beats (3, 1) 0.81 and (1, 2) 0.98
    (640, 480, 9, (2, 1), 3, 192),
    # 64x64: ceil(0.02) = 1 -> one piece
    (64, 64, 9, None, 1, 64),
    # 448x448: exactly one slice's area -> m = 1 -> one piece
    (448, 448, 9, None, 1, 64),
    # 449x448: just above -> m = 2; (2, 1) error 0.691 beats (1, 2) 0.695
    (449, 448, 9, (2, 1), 3, 192),
    # 896x896: m = 4; (2, 2) exact
    (896, 896, 9, (2, 2), 5, 320),
    # 1920x1080: 10.3 -> 9; {8, 9}; (4, 2) error 0.118 beats (3, 3) 0.575
    (1920, 1080, 9, (4, 2), 9, 576),
    # 100x10000: 4.98 -> m = 5; {4, 5, 6}; the tallest grid (1, 6) is closest to 1:100
    (100, 10000, 9, (1, 6), 7, 448),
    # 800x600 with max 2: m = min(3, 2) = 2; only 2 remains; (2, 1)
    (800, 600, 2, (2, 1), 3, 192),
    # max 1 (a video frame): never split
    (1000, 700, 1, None, 1, 64),
]


@pytest.mark.parametrize("w,h,max_slices,grid,slices,embeddings", CASES, ids=[f"{c[0]}x{c[1]}-max{c[2]}" for c in CASES])
def test_grid_slices_and_embeddings(w, h, max_slices, grid, slices, embeddings):
    assert get_sliced_grid((w, h), max_slices) == grid
    plan = slice_image(w, h, max_slices)
    assert plan.grid == grid
    assert plan.n_slices == slices
    assert plan.embeddings(64) == embeddings


# (w, h, max, overview (w, h), slice (w, h), patches) — by hand from find_best_resize / get_refine_size
PATCH_CASES = [
    # overview: h = int(448 * 3) = 1344, w = int(1344 / 9) = 149 -> 154; 11 x 96 = 1056; slices 448^2 = 1024 each
    (448, 4032, 9, (154, 1344), (448, 448), 1056 + 9 * 1024),
    # slices of 448x1008 -> 294x672 = 21 x 48 = 1008 patches each
    (448, 4032, 4, (154, 1344), (294, 672), 1056 + 4 * 1008),
    # not split: upscaled to 448x448
    (64, 64, 9, (448, 448), None, 1024),
    # 896x896: overview 448^2, four 448^2 slices
    (896, 896, 9, (448, 448), (448, 448), 5 * 1024),
    # 449x448: overview 448^2; slices of 224x448 upscaled: h = int(448 * sqrt 2) = 633 -> 630, w = 316 -> 322
    (449, 448, 9, (448, 448), (322, 630), 1024 + 2 * 23 * 45),
]


@pytest.mark.parametrize("w,h,max_slices,overview,slice_size,patches", PATCH_CASES,
                         ids=[f"{c[0]}x{c[1]}-max{c[2]}" for c in PATCH_CASES])
def test_resize_and_patch_counts(w, h, max_slices, overview, slice_size, patches):
    plan = slice_image(w, h, max_slices)
    assert plan.overview_size == overview
    assert plan.slice_size == slice_size
    assert plan.patches == patches


def test_sides_are_multiples_of_the_patch_and_area_near_the_slice_area():
    for size in [(123, 4567), (3000, 200), (777, 555), (10, 10)]:
        w, h = find_best_resize(size, 448, 14, allow_upscale=True)
        assert w % 14 == 0 and h % 14 == 0
        assert 0.8 * 448 * 448 < w * h < 1.25 * 448 * 448
