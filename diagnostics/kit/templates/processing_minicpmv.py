"""MiniCPM-V-2_6 processor (vllm-memcheck model kit): image processor + tokenizer.

vLLM 0.32 uses its own vendored MiniCPMVProcessor (picked by `processor_class`); this class is what
`AutoProcessor` with trust_remote_code loads (older vLLM, plain transformers). It replaces each
`(<image>./</image>)` with the image processor's placeholder and prepends the BOS token.
"""


import torch
from transformers.image_processing_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin

IMAGE_PATTERN = "(<image>./</image>)"


class MiniCPMVProcessor(ProcessorMixin):
    attributes = ["image_processor", "tokenizer"]
    image_processor_class = "AutoImageProcessor"
    tokenizer_class = "AutoTokenizer"

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        super().__init__(image_processor, tokenizer)
        self.version = kwargs.get("version", 2.6)

    def __call__(self, text, images=None, max_slice_nums=None, max_length=None, return_tensors="pt", **kwargs):
        texts = [text] if isinstance(text, str) else list(text)
        image_inputs = {}
        if images is not None:
            image_inputs = self.image_processor(images, max_slice_nums=max_slice_nums, return_tensors="pt")
        input_ids, bounds = [], []
        for index, prompt in enumerate(texts):
            chunks = prompt.split(IMAGE_PATTERN)
            sizes = image_inputs["image_sizes"][index] if image_inputs else []
            if len(sizes) != len(chunks) - 1:
                raise ValueError(f"prompt {index} has {len(chunks) - 1} image tags but {len(sizes)} images")
            final = chunks[0]
            for i, size in enumerate(sizes):
                final += self.image_processor.get_slice_image_placeholder(
                    size, image_idx=i, max_slice_nums=max_slice_nums
                ) + chunks[i + 1]
            ids = [self.tokenizer.bos_token_id] + self.tokenizer.encode(final, add_special_tokens=False)
            if max_length is not None:
                ids = ids[:max_length]
            ids = torch.tensor(ids, dtype=torch.int64)
            starts = torch.where(ids == self.tokenizer.convert_tokens_to_ids(self.image_processor.im_start))[0] + 1
            ends = torch.where(ids == self.tokenizer.convert_tokens_to_ids(self.image_processor.im_end))[0]
            input_ids.append(ids)
            bounds.append(torch.stack([starts, ends], dim=-1) if len(starts) else torch.zeros((0, 2), dtype=torch.int64))
        longest = max(len(ids) for ids in input_ids)
        pad_id = self.tokenizer.pad_token_id or 0
        padded = torch.full((len(input_ids), longest), pad_id, dtype=torch.int64)
        mask = torch.zeros((len(input_ids), longest), dtype=torch.bool)
        for row, ids in enumerate(input_ids):
            padded[row, longest - len(ids):] = ids
            mask[row, longest - len(ids):] = True
            bounds[row] = bounds[row] + (longest - len(ids))
        data = {"input_ids": padded, "attention_mask": mask, "image_bound": bounds}
        data.update(dict(image_inputs))
        return BatchFeature(data=data)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)
