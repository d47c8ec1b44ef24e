

# ---- MiniCPM-V-2_6 image processor (vllm-memcheck model kit); the slicing rule above is diagnostics/families/minicpmv_slicing.py ----

from typing import TypedDict

import numpy as np
import PIL.Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

try:
    from transformers.processing_utils import ImagesKwargs
except ImportError:  # transformers without typed image kwargs
    class ImagesKwargs(TypedDict, total=False):
        pass


class MiniCPMVImageProcessorKwargs(ImagesKwargs, total=False):
    max_slice_nums: int
    scale_resolution: int
    patch_size: int
    image_feature_size: int
    use_image_id: bool
    slice_mode: bool
    norm_mean: list
    norm_std: list
    im_start: str
    im_end: str
    slice_start: str
    slice_end: str
    unk: str
    im_id_start: str
    im_id_end: str
    version: float


def _width_height(image_size) -> tuple[int, int]:
    """(w, h) from vLLM's ImageSize, a tensor([w, h]), a PIL image or a plain pair."""
    if hasattr(image_size, "width") and hasattr(image_size, "height"):
        return int(image_size.width), int(image_size.height)
    if hasattr(image_size, "tolist"):
        image_size = image_size.tolist()
    width, height = image_size
    return int(width), int(height)


def _to_pil(image):
    """PIL images pass through; HWC/CHW numpy arrays or tensors (uint8, or float in [0, 1]) become RGB PIL images."""
    if isinstance(image, PIL.Image.Image):
        return image
    array = np.asarray(image.cpu().numpy() if hasattr(image, "cpu") else image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)
    if array.dtype != np.uint8:
        array = np.clip(array * (255.0 if array.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return PIL.Image.fromarray(array)


def _is_single_image(x) -> bool:
    return isinstance(x, PIL.Image.Image) or (hasattr(x, "ndim") and x.ndim <= 3)


def _as_prompt_batches(images):
    """One list of images per prompt: accepts an image, a list of images, or a list of lists / frame arrays."""
    if _is_single_image(images):
        return [[images]]
    images = list(images)
    if images and _is_single_image(images[0]):
        return [images]
    return [list(prompt_images) for prompt_images in images]


class MiniCPMVImageProcessor(BaseImageProcessor):
    """Slices an image into a 448-px overview plus a grid of slices; each slice becomes `image_feature_size`
    (= query_num) embeddings. Outputs vLLM's layout: pixel_values list[list[(3, patch, n*patch)]],
    image_sizes list[list[tensor([w, h])]], tgt_sizes list[tensor(n_slices, 2)] as (rows, cols) in patches.
    """

    model_input_names = ["pixel_values"]
    valid_kwargs = MiniCPMVImageProcessorKwargs

    def __init__(
        self,
        max_slice_nums=9,
        scale_resolution=448,
        patch_size=14,
        image_feature_size=64,
        use_image_id=True,
        slice_mode=True,
        norm_mean=(0.5, 0.5, 0.5),
        norm_std=(0.5, 0.5, 0.5),
        im_start="<image>",
        im_end="</image>",
        slice_start="<slice>",
        slice_end="</slice>",
        unk="<unk>",
        im_id_start="<image_id>",
        im_id_end="</image_id>",
        version=2.6,
        **kwargs,
    ):
        for key in ("image_mean", "image_std", "mean", "std"):
            kwargs.pop(key, None)
        super().__init__(**kwargs)
        self.max_slice_nums = int(max_slice_nums)
        self.scale_resolution = int(scale_resolution)
        self.patch_size = int(patch_size)
        self.image_feature_size = int(image_feature_size)
        self.use_image_id = bool(use_image_id)
        self.slice_mode = bool(slice_mode)
        self.version = version
        self.norm_mean = [float(x) for x in norm_mean]
        self.norm_std = [float(x) for x in norm_std]
        self.mean = self.image_mean = list(self.norm_mean)
        self.std = self.image_std = list(self.norm_std)
        self.im_start = self.im_start_token = im_start
        self.im_end = self.im_end_token = im_end
        self.slice_start = self.slice_start_token = slice_start
        self.slice_end = self.slice_end_token = slice_end
        self.unk = self.unk_token = unk
        self.im_id_start = im_id_start
        self.im_id_end = im_id_end

    # -- token arithmetic ----------------------------------------------------------------------------------
    def get_sliced_grid(self, image_size, max_slice_nums=None, nerver_split=False, never_split=False):
        """(cols, rows) or None, by the MiniCPM-V slicing rule."""
        if max_slice_nums is None:
            max_slice_nums = self.max_slice_nums
        return get_sliced_grid(
            _width_height(image_size), int(max_slice_nums), self.scale_resolution,
            never_split=bool(never_split or nerver_split),
        )

    def get_image_id_placeholder(self, idx=0):
        return f"{self.im_id_start}{idx}{self.im_id_end}"

    def get_grid_placeholder(self, grid):
        if grid is None:
            return ""
        piece = self.slice_start + self.unk * self.image_feature_size + self.slice_end
        cols, rows = grid
        return "\n".join(piece * cols for _ in range(rows))

    def get_slice_image_placeholder(self, image_size, image_idx=0, max_slice_nums=None, use_image_id=None):
        """The text that replaces one `(<image>./</image>)`: (cols*rows + 1) * image_feature_size `<unk>`s."""
        grid = self.get_sliced_grid(image_size, max_slice_nums=max_slice_nums)
        text = self.im_start + self.unk * self.image_feature_size + self.im_end
        use_image_id = self.use_image_id if use_image_id is None else bool(use_image_id)
        if use_image_id:
            text = self.get_image_id_placeholder(image_idx) + text
        if self.slice_mode:
            text += self.get_grid_placeholder(grid)
        return text

    # -- pixels --------------------------------------------------------------------------------------------
    def slice_pil_image(self, image, max_slice_nums=None):
        """Overview first, then the grid's slices row by row, as PIL images."""
        if max_slice_nums is None:
            max_slice_nums = self.max_slice_nums
        plan = slice_image(image.size[0], image.size[1], int(max_slice_nums), self.scale_resolution, self.patch_size)
        pieces = [image.resize(plan.overview_size, PIL.Image.BICUBIC)]
        if plan.grid is not None:
            cols, rows = plan.grid
            slice_w, slice_h = plan.slice_size
            refined = image.resize((slice_w * cols, slice_h * rows), PIL.Image.BICUBIC)
            for r in range(rows):
                for c in range(cols):
                    pieces.append(refined.crop((c * slice_w, r * slice_h, (c + 1) * slice_w, (r + 1) * slice_h)))
        return pieces

    def to_patch_strip(self, piece):
        """(3, patch, n_patches*patch) float32, patches side by side in row-major order; and (rows, cols)."""
        p = self.patch_size
        array = np.asarray(piece, dtype=np.float32) / 255.0
        array = (array - np.array(self.norm_mean, np.float32)) / np.array(self.norm_std, np.float32)
        array = array.transpose(2, 0, 1)
        _, height, width = array.shape
        rows, cols = height // p, width // p
        strip = array[:, : rows * p, : cols * p].reshape(3, rows, p, cols, p).transpose(0, 2, 1, 3, 4)
        return np.ascontiguousarray(strip.reshape(3, p, rows * cols * p)), (rows, cols)

    def preprocess(self, images, do_pad=True, max_slice_nums=None, return_tensors=None, **kwargs):
        pixel_values, image_sizes, tgt_sizes = [], [], []
        for prompt_images in _as_prompt_batches(images):
            values, sizes, targets = [], [], []
            for image in prompt_images:
                image = _to_pil(image).convert("RGB")
                sizes.append(np.array(image.size, dtype=np.int64))
                for piece in self.slice_pil_image(image, max_slice_nums):
                    strip, target = self.to_patch_strip(piece)
                    values.append(strip)
                    targets.append(target)
            pixel_values.append(values)
            image_sizes.append(sizes)
            tgt_sizes.append(np.array(targets, dtype=np.int64).reshape(-1, 2))
        if str(return_tensors) in ("pt", "TensorType.PYTORCH"):
            import torch

            pixel_values = [[torch.from_numpy(v) for v in values] for values in pixel_values]
            image_sizes = [[torch.from_numpy(s) for s in sizes] for sizes in image_sizes]
            tgt_sizes = [torch.from_numpy(t) for t in tgt_sizes]
        return BatchFeature(
            data={"pixel_values": pixel_values, "image_sizes": image_sizes, "tgt_sizes": tgt_sizes}, tensor_type=None
        )

    def __call__(self, images, do_pad=True, max_slice_nums=None, return_tensors=None, **kwargs):
        return self.preprocess(images, do_pad=do_pad, max_slice_nums=max_slice_nums, return_tensors=return_tensors)


# vLLM 0.5.5 / 0.6.3 load the image processor without trust_remote_code (their legacy MiniCPM-V input processor).
# openbmb's checkpoint file ends with this registration, so that load finds the class once the trusted load has
# imported this module; the kit does the same (docs/gpu-box.md, compatibility review item 4).
from transformers import AutoImageProcessor  # noqa: E402

AutoImageProcessor.register("MiniCPMVImageProcessor", MiniCPMVImageProcessor)
