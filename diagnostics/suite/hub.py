"""The model a sweep starts, fetched once before the first start, and the Hugging Face environment each start gets.

The user's environment is respected: a hub id is downloaded (or found in the cache) once, with one progress line,
through huggingface_hub's `snapshot_download` — vLLM's own downloader — so that 48 starts do not each fail or
download. Offline mode (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE) is set for a start only where nothing may come from
the hub: a kit:* model built on the fly or a local model directory (and the snapshot just downloaded). With
load_format=dummy no weights are needed, so only the config, tokenizer and processor files are fetched.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from collections.abc import Callable

from diagnostics.errors import UsageError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# What vLLM reads besides the weights: configs, tokenizer, processor, remote code, chat template.
NO_WEIGHTS = ["*.json", "*.py", "*.txt", "*.model", "*.tiktoken", "*.jinja", "tokenizer*"]


class HubUnreachable(RuntimeError):
    """The model could not be fetched from the hub (network, token, or offline without a cached copy)."""


def is_hub_id(model: str) -> bool:
    """`org/name` and not a directory here: fetched once before the first start. Anything else (a kit, a local
    directory, a bare name) goes to vLLM as it is."""
    return bool(HUB_ID.match(model)) and not Path(model).expanduser().is_dir()


def start_env(model_path: str) -> dict:
    """The HF variables a start gets on top of the user's environment: offline for a local directory, else none."""
    return dict(OFFLINE_ENV) if Path(model_path).is_dir() else {}


def offline_requested() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in OFFLINE_ENV)


def download_model(model: str, load_format: str, say: Callable[[str], None] = print) -> str:
    """The local snapshot directory of hub id `model` (downloaded once now, or found in the cache).

    One line before and one after; HubUnreachable with one line saying why (no network, gated repo, no token,
    offline and not cached). Follows vLLM's own `snapshot_download` use (vllm/model_executor/model_loader).
    """
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars
    except ImportError:  # vLLM brings huggingface_hub; without it no start can run anyway
        raise UsageError(f"cannot download {model}: huggingface_hub is not installed (it comes with vLLM: "
                         "scripts/install.sh gpu VERSION)") from None
    offline = offline_requested()
    patterns = NO_WEIGHTS if load_format == "dummy" else None
    what = "config and tokenizer files (load_format dummy)" if patterns else "the checkpoint"
    say(f"vllm-memcheck: {'looking up' if offline else 'fetching'} {model} ({what}) "
        f"{'in the local Hugging Face cache (HF_HUB_OFFLINE)' if offline else 'from the Hugging Face hub'}, "
        "once, before the first start ...")
    disable_progress_bars()
    try:
        path = snapshot_download(model, allow_patterns=patterns, local_files_only=offline)
    except LocalEntryNotFoundError as err:
        if offline:
            raise HubUnreachable(f"{model} is not in the local Hugging Face cache and HF_HUB_OFFLINE/"
                                 "TRANSFORMERS_OFFLINE is set; unset it to download, or pass --model=PATH") from None
        raise HubUnreachable(f"cannot reach the Hugging Face hub to fetch {model} ({_short(err)}); check the "
                             "network (or HF_ENDPOINT), or pass a local --model=PATH or a kit:* model") from None
    except GatedRepoError:
        raise HubUnreachable(f"{model} is gated on the Hugging Face hub: accept its terms and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise HubUnreachable(f"{model} is not a model on the Hugging Face hub (or it is private: set HF_TOKEN); "
                             "check --model") from None
    except (OSError, ValueError) as err:  # requests/httpx connection errors derive from OSError
        raise HubUnreachable(f"cannot reach the Hugging Face hub to fetch {model} ({_short(err)}); check the "
                             "network (or HF_ENDPOINT), or pass a local --model=PATH or a kit:* model") from None
    finally:
        enable_progress_bars()
    say(f"vllm-memcheck: {model} is at {path}")
    return str(path)


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text[:160]}" if text else type(err).__name__
