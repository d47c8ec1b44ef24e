"""CPU-only torch shim for vLLM's CPU backend (put this folder on PYTHONPATH of the engine process only).

vLLM 0.32's Resampler2_5.forward (MiniCPM-V 2.5/2.6) calls torch.cuda.is_current_stream_capturing(), which on a
CPU-only torch raises "Tried to instantiate dummy base class _cuda_isCurrentStreamCapturing". Once torch is
imported, make it return False when CUDA is unavailable. Nothing is imported until the process imports torch.
Without torchvision, its imports are answered by torchvision_stub (see the end of this file).
"""

import importlib.abc
import sys


def _patch(torch_module) -> None:
    cuda = getattr(torch_module, "cuda", None)
    if cuda is None or cuda.is_available():
        return
    original = cuda.is_current_stream_capturing

    def is_current_stream_capturing() -> bool:
        return False

    is_current_stream_capturing.__wrapped__ = original
    cuda.is_current_stream_capturing = is_current_stream_capturing
    graphs = sys.modules.get("torch.cuda.graphs")
    if graphs is not None:
        graphs.is_current_stream_capturing = is_current_stream_capturing


class _PatchTorchOnImport(importlib.abc.MetaPathFinder):
    """Wraps the loader of the top-level `torch` module so _patch runs right after `import torch` finishes.

    Stays on sys.meta_path until the patch is applied: libraries probe with importlib.util.find_spec("torch")
    before the real import, and each probe gets a fresh spec.
    """

    def find_spec(self, fullname, path, target=None):
        if fullname != "torch":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)

        spec.loader.exec_module = exec_and_patch
        return spec


if "torch" in sys.modules:
    _patch(sys.modules["torch"])
else:
    sys.meta_path.insert(0, _PatchTorchOnImport())


# torchvision cannot be installed beside the CPU torch: answer its imports with the import-only stub, so vLLM's
# Qwen-VL / InternVL / Gemma 3 / LLaVA modules import. VLLM_MEMCHECK_TORCHVISION_STUB=visible also lets
# transformers see it (its video processors exist only then; the VLM kits name PIL image processors).
def _install_torchvision_stub() -> None:
    import importlib.util
    import os

    if importlib.util.find_spec("torchvision") is not None:
        return
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torchvision_stub

    torchvision_stub.install(visible=os.environ.get("VLLM_MEMCHECK_TORCHVISION_STUB") == "visible")


_install_torchvision_stub()
