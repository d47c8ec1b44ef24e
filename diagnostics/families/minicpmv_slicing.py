"""MiniCPM-V image slicing: how many 448-px slices (and so how many 64-query embeddings) an image becomes.

Pure arithmetic, no imports beyond `math`. The estimator uses it for the dummy image's token count, and the
model kit embeds this very file into the checkpoint's `image_processing_minicpmv.py`, so the tokens vLLM
counts and the tokens we predict come from one rule.

The rule (MiniCPM-V 2.5/2.6 behaviour):
1. m = min(ceil(w*h / scale^2), max_slice_nums); m <= 1 means the image is not split.
2. Candidate slice counts are {m-1, m, m+1} without 1 and without anything above max_slice_nums.
3. Among all factor grids (cols, rows) of those counts pick the one whose aspect ratio is closest in log space.
4. The overview is resized to an area of about scale^2, each side a multiple of the patch size (upscaled when
   the image is not split); every slice is sized the same way from the grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def ensure_divide(length: float, patch_size: int) -> int:
    return max(round(length / patch_size) * patch_size, patch_size)


def find_best_resize(size, scale_resolution: int, patch_size: int, allow_upscale: bool = False):
    width, height = size
    if width * height > scale_resolution * scale_resolution or allow_upscale:
        r = width / height
        height = int(scale_resolution / math.sqrt(r))
        width = int(height * r)
    return ensure_divide(width, patch_size), ensure_divide(height, patch_size)


def get_sliced_grid(size, max_slice_nums: int, scale_resolution: int = 448, never_split: bool = False):
    """(cols, rows) of the slice grid, or None when the image stays one piece."""
    width, height = size
    log_ratio = math.log(width / height)
    multiple = min(math.ceil(width * height / (scale_resolution * scale_resolution)), max_slice_nums)
    if multiple <= 1 or never_split:
        return None
    counts = [n for n in (multiple - 1, multiple, multiple + 1) if n != 1 and n <= max_slice_nums]
    best, best_error = (1, 1), float("inf")
    for n in counts:
        for cols in range(1, n + 1):
            if n % cols:
                continue
            error = abs(log_ratio - math.log(cols / (n // cols)))
            if error < best_error:
                best, best_error = (cols, n // cols), error
    return best


def get_refine_size(size, grid, scale_resolution: int, patch_size: int, allow_upscale: bool = False):
    width, height = size
    cols, rows = grid
    refine_w, refine_h = ensure_divide(width, cols), ensure_divide(height, rows)
    best_w, best_h = find_best_resize(
        (refine_w / cols, refine_h / rows), scale_resolution, patch_size, allow_upscale=allow_upscale
    )
    return best_w * cols, best_h * rows


@dataclass(frozen=True)
class SlicePlan:
    """What one image becomes: the overview first, then cols x rows slices (row-major)."""

    grid: tuple[int, int] | None
    overview_size: tuple[int, int]  # (w, h) in pixels
    slice_size: tuple[int, int] | None  # (w, h) of each slice
    patch_size: int

    @property
    def n_slices(self) -> int:
        """Overview included."""
        return 1 + (self.grid[0] * self.grid[1] if self.grid else 0)

    @property
    def patches(self) -> int:
        """ViT patch tokens over all slices (the vision encoder's work)."""
        p = self.patch_size
        total = (self.overview_size[0] // p) * (self.overview_size[1] // p)
        if self.grid:
            total += (self.grid[0] * self.grid[1]) * (self.slice_size[0] // p) * (self.slice_size[1] // p)
        return total

    def embeddings(self, query_num: int = 64) -> int:
        """LLM embedding positions (what vLLM's encoder budget counts)."""
        return self.n_slices * query_num


def slice_image(
    width: int, height: int, max_slice_nums: int = 9, scale_resolution: int = 448, patch_size: int = 14,
    never_split: bool = False,
) -> SlicePlan:
    grid = get_sliced_grid((width, height), max_slice_nums, scale_resolution, never_split)
    if grid is None:
        overview = find_best_resize((width, height), scale_resolution, patch_size, allow_upscale=True)
        return SlicePlan(None, overview, None, patch_size)
    overview = find_best_resize((width, height), scale_resolution, patch_size)
    refine_w, refine_h = get_refine_size((width, height), grid, scale_resolution, patch_size, allow_upscale=True)
    return SlicePlan(grid, overview, (refine_w // grid[0], refine_h // grid[1]), patch_size)
