"""The run a pytest session measures: its options (one table, each CLI option with an ini twin), the run
directory (`<report-dir>/<run>/`, shared with xdist workers) and the model directory (kit:* built on the fly)."""

from __future__ import annotations

import copy
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from diagnostics.errors import UsageError, one_of
from diagnostics.kit import build_minicpmv26
from diagnostics.predict.coefficients import Calibration, load_calibration_arg
from diagnostics.kit.tiny_text import build_tiny_text
from diagnostics.kit.vlm import build_vlm_kit, kit_families
from diagnostics.models import ALIASES, hub_id, stored_models, stored_name
from diagnostics.suite.matrix import SHIPPED_MATRIX
from diagnostics.suite.results import RESULTS_FILE, latest_run_dir, load_results, new_run_dir

RUN_DIR_ENV = "VLLM_MEMCHECK_RUN_DIR"  # the xdist controller hands its run directory to the workers
DEFAULT_MODEL = "openbmb/MiniCPM-V-2_6"
CPU_DEFAULT_MODEL = "kit:tiny-text"  # --card=cpu without a model: what the CPU backend starts in seconds
DEFAULT_REGRESSION_SPEC = "peak:5%,kv_tokens:5%,startup:20%"
DEFAULT_ENGINE_TIMEOUT_S = 900.0
KIT_MODELS = ("kit:minicpm-v-2_6", "kit:minicpm-v-2_6-tiny", "kit:minicpm-v-4_5", "kit:minicpm-v-4_5-tiny",
              "kit:tiny-text", "kit:NAME (a stored VLM config)")
SHIPPED_VLM_MATRIX = Path(__file__).parents[1] / "data" / "vlm.toml"
CPU_MATRIX = Path(__file__).resolve().parents[1] / "data" / "cpu-tiny.toml"  # what --card=cpu runs by default
CPU_REFUSED = tuple(ALIASES)  # MiniCPM-V-2_6 by any of its names (real shapes: ~16 GB of weights), lower case
LOAD_FORMATS = ("auto", "dummy")
CACHE_STATES = ("cold", "warm", "user")
CACHE_ENV = ("VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")  # fresh when cold, shared when warm
MAX_REPEAT = 20

# (name, CLI kwargs, ini type, help). The ini twin is memcheck_<name>: memcheck_card, memcheck_report_dir, ...
# (prefixed, because bare names like `model` or `resume` would collide with other plugins' ini keys).
INI_PREFIX = "memcheck_"
WORST_CASE_MODES = ("auto", "on", "off")
OPTIONS = (
    ("card", {"metavar": "NAME|auto|cpu"}, "string",
     "card profile to measure against (3090, l4, a100-80, ...); auto: detect through NVML (default); "
     "cpu: vLLM's CPU backend"),
    ("cards", {"metavar": "FILE"}, "string", "TOML file adding or overriding card profiles ([cards.NAME])"),
    ("model", {"metavar": "ID|PATH"}, "string",
     f"model to start (default: the matrix's, else {DEFAULT_MODEL}); {', '.join(KIT_MODELS)} build a "
     "local checkpoint directory on the fly"),
    ("matrix", {"metavar": "FILE"}, "string", "TOML matrix of settings (default: the shipped MiniCPM-V-2_6 matrix; "
     "data/vlm.toml for a stored VLM name such as qwen2.5-vl-7b)"),
    ("load_format", {"metavar": "|".join(LOAD_FORMATS)}, "string", "auto (real weights) or dummy (random weights, no download)"),
    ("engine_timeout", {"metavar": "SECONDS"}, "string",
     f"kill a start-up (its whole process group) after this many seconds (default {DEFAULT_ENGINE_TIMEOUT_S:g}; "
     "0: no limit)"),
    ("report_dir", {"metavar": "DIR"}, "string", "where runs go: DIR/<run>/results.jsonl (default reports/)"),
    ("resume", {"action": "store_true"}, "bool", "append to the latest run and skip combinations it finished"),
    ("allow_card_mismatch", {"action": "store_true"}, "bool",
     "warn instead of stopping when NVML reports another card than --card"),
    ("save_baseline", {"metavar": "NAME"}, "string", "save this run as baseline NAME (keyed by card, driver, vLLM)"),
    ("compare_baseline", {"metavar": "NAME|FILE"}, "string",
     "compare this run with a baseline; fail on regressions beyond --fail-on-regression"),
    ("fail_on_regression", {"metavar": "SPEC"}, "string",
     f"tolerances for --compare-baseline (default {DEFAULT_REGRESSION_SPEC}; KEY:off disables one)"),
    ("baseline_dir", {"metavar": "DIR"}, "string", "where baselines live (default .memcheck/baselines)"),
    ("save_baseline_if_missing", {"action": "store_true"}, "bool",
     "with --compare-baseline NAME: when that baseline does not exist yet, record this run as it (on purpose) "
     "instead of failing"),
    ("calibration", {"metavar": "FILE"}, "string",
     "calibration TOML (`python -m diagnostics calibrate`) for plan's predictions and expectations; 'shipped': "
     "the one fitted on the field cases (diagnostics/data/calibration.toml); default: the built-in coefficients"),
    ("gpus", {"metavar": "I,J,..."}, "string",
     "NVML indices of the GPUs to use: with pytest-xdist each worker takes its own (gwK the K-th, wrapping), a "
     "tensor_parallel_size=N start the worker's and the next N-1 (default with -n: every GPU NVML sees)"),
    ("worst_case", {"metavar": "|".join(WORST_CASE_MODES)}, "string",
     "after each start, the worst-case request (a max_model_len prompt with the largest items the settings allow, "
     "sampling with top_p/top_k/logprobs, a small batch where max_num_seqs > 1); auto (default): the matrix's "
     "worst_case, else on for GPU cards and off on the cpu card"),
    ("cache_state", {"metavar": "|".join(CACHE_STATES)}, "string",
     "compile caches of each start: cold (default: fresh VLLM_CACHE_ROOT, TORCHINDUCTOR_CACHE_DIR, TRITON_CACHE_DIR), "
     "warm (one discarded warm-up start with the same settings first), user (whatever the user's caches hold); "
     "the record names it and the gate compares only like with like"),
    ("repeat", {"metavar": "N"}, "string",
     "start each combination N times (default 1); the record carries min/median/max of each figure and the gate "
     "derives its default tolerances from that spread"),
    ("allow_cache_mismatch", {"action": "store_true"}, "bool",
     "with --compare-baseline: compare a baseline of another cache state (cold/warm) with a warning; its figures "
     "are shown, not judged"),
    ("search", {"metavar": "SETTING"}, "string",
     "instead of the matrix, find the largest max_model_len or max_num_seqs, or multimodal knob (max_pixels, "
     "max_slice_nums, max_patches, pan_and_scan_max_num_crops, num_frames, limit_mm_per_prompt.image / .video: "
     "each start then sends one image of the probed size), that starts (matrix defaults held), seeded by "
     "plan --fit, in at most ceil(log2(grid)) + 1 starts"),
    ("search_resolution", {"metavar": "N"}, "string",
     "--search stops at this resolution (default: the KV block size for max_model_len, the knob's step, e.g. "
     "28 x 28 px for Qwen2.5-VL max_pixels, else 1)"),
    ("search_range", {"metavar": "LO:HI"}, "string",
     "--search range (default: block size .. the model's derived max_model_len; 1 .. 1024 sequences; a knob's "
     "domain)"),
)


def add_options(parser) -> None:
    """Every OPTIONS row as `--name-with-dashes` in one group, plus its ini twin `memcheck_<name>`."""
    group = parser.getgroup("vllm-memcheck", "vLLM start-up memory (vllm-memcheck)")
    for name, kwargs, ini_type, help_text in OPTIONS:
        flag = f"--{name.replace('_', '-')}"
        extra = {} if kwargs.get("action") else {"default": None}
        group.addoption(flag, dest=f"memcheck_{name}", help=help_text.replace("%", "%%"), **kwargs, **extra)
        parser.addini(f"{INI_PREFIX}{name}", f"{help_text} (ini twin of {flag})", type=ini_type,
                      default=False if ini_type == "bool" else "")


# options whose empty value would silently mean the default (the CLI's `--model ""`): refused, naming what is taken
NAMED_OPTIONS = {"model": "a hub id, a model directory, a stored name or kit:NAME",
                 "matrix": "a matrix TOML file", "card": "a card name, auto or cpu"}


def option(config, name: str):
    """The CLI value when given, else the ini value, else None (also for an empty ini string)."""
    value = config.getoption(f"memcheck_{name}", None)
    if isinstance(value, str) and not value.strip() and name in NAMED_OPTIONS:  # `--model ""`: not the default
        raise UsageError(f"--{name.replace('_', '-')} is empty; accepted: {NAMED_OPTIONS[name]}")
    if value is not None and value is not False:  # not `in (None, False)`: 0 == False, and 0 is a value
        return value
    value = config.getini(f"{INI_PREFIX}{name}")
    return value if value not in ("", None, []) else (False if isinstance(value, bool) else None)


def check_model_path(model: str) -> None:
    """A --model that names a local path (absolute, ./, ../, ~) must be a directory with config.json; a hub id
    (org/name) is left to vLLM. Caught here so a typo is one line, not 48 failed starts."""
    if not model.startswith(("/", ".", "~")) and not os.path.isabs(model):
        return
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        what = ("has no config.json" if path.is_dir() else "is a file, not a model directory" if path.exists()
                else "does not exist")
        raise UsageError(f"model path {model!r} {what}; accepted: a local model directory with config.json, a hub "
                         f"id (org/name), or {', '.join(KIT_MODELS)}")


def stored_vlm(model: str) -> str | None:
    """The stored config name behind `qwen2.5-vl-7b`, `kit:qwen2.5-vl-7b` or its hub id
    (`Qwen/Qwen2.5-VL-7B-Instruct`), else None."""
    name = (model or "").lower().removeprefix("kit:")
    if name in stored_models():
        return name
    return stored_name(model) if model and not model.startswith("kit:") and "/" in model else None


def check_model(model: str) -> None:
    """UsageError for an unknown kit:* name, a local path that is no model directory, or one whose config.json
    plan cannot read (local_model_spec)."""
    kits = [k for k in KIT_MODELS if not k.startswith("kit:NAME")] + [f"kit:{n}" for n in kit_families()]
    if model.lower().startswith("kit:") and model not in kits:  # KIT:x would reach vLLM as a hub id, per start
        raise UsageError(f"unknown model kit {model!r}; accepted: {', '.join(kits)}")
    check_model_path(model)
    local_model_spec(model)


def local_model_spec(model: str | None):
    """The diagnostics.models.ModelSpec of a --model that is a local directory (relative paths too), read from its
    config.json as plan reads it; None for a kit, a stored name or a hub id. UsageError, one line naming --model,
    for a config.json plan cannot read (not JSON, no architecture it knows)."""
    from diagnostics.models import get_model

    path = Path(str(model or "")).expanduser()
    if not model or str(model).startswith("kit:") or not (path / "config.json").is_file():
        return None
    try:
        return get_model(path)
    except UsageError as err:
        raise UsageError(f"--model {model}: {err}" + ("" if "accepted" in str(err) else
                         "; accepted: a model directory whose config.json is a Hugging Face config (JSON)")) from None


def matrix_path(matrix: str | None, model: str | None) -> Path | str:
    """--matrix when given; the shipped VLM matrix for a stored VLM name; else the MiniCPM-V-2_6 matrix."""
    if matrix:
        return matrix
    return SHIPPED_VLM_MATRIX if model and stored_vlm(model) else SHIPPED_MATRIX


def choice(config, name: str, accepted, default: str) -> str:
    """An option (or its ini twin) that takes one of `accepted`, checked here rather than by argparse's `choices`:
    a bad value is one usage line either way, and the ini twin is checked too (argparse never sees it)."""
    return checked(name, str(option(config, name) or default), accepted)


def checked(name: str, value: str, accepted) -> str:
    """`value` when it is one of `accepted`, else UsageError naming --NAME, the value and what is accepted."""
    if value not in accepted:
        raise one_of(f"--{name.replace('_', '-')} value", value, accepted)
    return value


def load_format_for(model: str, load_format: str | None) -> str:
    """The load format to use; the MiniCPM-V kits are written without weights: only dummy weights load them."""
    load_format = checked("load_format", load_format or "auto", LOAD_FORMATS)
    return "dummy" if model.startswith("kit:minicpm") or (model.startswith("kit:") and stored_vlm(model)) \
        else load_format


def calibration(text: str | None) -> Calibration | None:
    """--calibration: FILE, 'shipped' (diagnostics/data/calibration.toml), or unset (None: the built-in
    coefficients). UsageError (one line naming the file) for a missing or malformed file."""
    return None if not text else load_calibration_arg(str(text))


MIN_ENGINE_TIMEOUT_S = 1.0  # below this every start would "time out" and be counted against plan


def engine_timeout(text) -> float | None:
    """--engine-timeout in seconds: DEFAULT_ENGINE_TIMEOUT_S when not given, None (no limit) for 0."""
    if text is None:
        return DEFAULT_ENGINE_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0 or 0 < seconds < MIN_ENGINE_TIMEOUT_S:
        raise UsageError(f"bad engine_timeout {text!r}; accepted: a number of seconds >= {MIN_ENGINE_TIMEOUT_S:g} "
                         "(an engine start takes longer), or 0 for no limit")
    return seconds or None


def repeat_count(text) -> int:
    """--repeat N: a whole number 1..MAX_REPEAT (default 1); UsageError otherwise."""
    if text is None or text == "":
        return 1
    try:
        n = int(str(text))
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_REPEAT:
        raise UsageError(f"bad repeat {text!r}; accepted: a whole number of starts from 1 to {MAX_REPEAT}")
    return n


def cache_env(root: Path) -> dict:
    """The environment of a start whose compile caches live under `root`: vLLM's torch.compile cache under
    VLLM_CACHE_ROOT (vllm/envs.py), torch inductor's under TORCHINDUCTOR_CACHE_DIR, Triton's compiled kernels (vLLM's
    own Triton ops) under TRITON_CACHE_DIR."""
    return {"VLLM_CACHE_ROOT": str(root / "vllm"), "TORCHINDUCTOR_CACHE_DIR": str(root / "inductor"),
            "TRITON_CACHE_DIR": str(root / "triton")}


def check_cpu_model(model: str, asked: str | None = None) -> None:
    """--card=cpu cannot start the 16 GB MiniCPM-V-2_6 (real shapes) by any of its names, in any case, nor a
    real-size model the user named with --model (`asked`: a stored model by short name, hub id or kit:NAME, or
    kit:minicpm-v-4_5; kit:tiny-text and kit:*-tiny stay allowed). A matrix's own model is checked against the first
    list only. UsageError, one line naming what works."""
    size = "the 16 GB model" if str(model).strip().lower() in CPU_REFUSED else cpu_real_size(asked)
    if size:
        raise UsageError(f"--card=cpu cannot start {asked or model} ({size}) on vLLM's CPU backend; use the CPU "
                         f"matrix {CPU_MATRIX.name} (the default with --card=cpu) with --model=kit:tiny-text or "
                         "--model=kit:minicpm-v-2_6-tiny (or another kit:*-tiny)")


def cpu_real_size(model: str | None) -> str | None:
    """Why `model` (the user's --model) is too big for the CPU backend ("a real-size model of N billion
    parameters"), or None: a tiny kit, a local directory or hub id plan does not store."""
    name = str(model or "").strip()
    if not name or name.lower() == CPU_DEFAULT_MODEL or name.lower().endswith("-tiny"):
        return None
    stored = stored_vlm(name)
    if stored is None and name.lower() not in ("kit:minicpm-v-2_6", "kit:minicpm-v-4_5"):
        return None
    from diagnostics.models import get_model

    try:
        params = get_model(stored or name.removeprefix("kit:")).params
    except UsageError:
        params = 0
    return f"a real-size model of {params / 1e9:.1f} billion parameters" if params else "a real-size model"


def check_writable_dir(path: Path, flag: str) -> None:
    """Create `path` (and parents) and write a probe file there now, so a bad directory is a usage error before
    the first start and not a traceback after a long sweep."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag}={path} is a file; accepted: a directory (created when missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise UsageError(f"{flag}={path} is not writable ({err.strerror or err}); accepted: a directory this user "
                         "can write (created when missing)") from None


@dataclass
class RunDir:
    """Where this session's results go. `path` is None until the first start (or --resume / xdist) needs it."""

    report_dir: Path
    path: Path | None = None
    finished: frozenset = frozenset()  # ids already recorded in the run (--resume skips them)
    failed: dict = field(default_factory=dict)  # id -> recorded record whose test failed (--resume fails it again)
    notice: str | None = None
    _saved_env: str | None = None
    _exported: bool = False

    @classmethod
    def prepare(cls, report_dir: Path, resume: bool, is_worker: bool, model: str | None = None) -> RunDir:
        """--resume: the latest run. An xdist worker: the run the controller exported (RUN_DIR_ENV). UsageError
        when the run to resume holds one id twice or records of another model than `model` (this session's): its
        table would mix them."""
        run = cls(report_dir)
        inherited = os.environ.get(RUN_DIR_ENV) if is_worker else None
        if inherited:
            run.path = Path(inherited)
        elif resume:
            run.path = latest_run_dir(report_dir)
            if run.path is None:
                run.notice = f"--resume: no earlier run under {report_dir}/; starting a new one"
        if run.path is not None and resume:
            records = load_results(run.path)
            ids = [r["id"] for r in records if r.get("id")]
            twice = sorted({i for i in ids if ids.count(i) > 1})
            if twice:
                raise UsageError(f"--resume: {run.path / RESULTS_FILE} has more than one record for "
                                 f"{', '.join(map(str, twice[:3]))}; accepted: a run as the sweep wrote it (start a new "
                                 "run: leave out --resume)")
            others = sorted({str(r["model"]) for r in records if r.get("model") and model and r["model"] != model})
            if others:
                raise UsageError(f"--resume: the latest run ({run.path.name}) is of {', '.join(others)}, not {model}; "
                                 "accepted: --resume with the run's own model (or leave out --resume)")
            run.finished = frozenset(ids)
            run.failed = {r["id"]: r for r in records if r.get("id") and r.get("status") == "failed"}
        return run

    def ensure(self) -> Path:
        """The run directory, created on first use."""
        if self.path is None:
            self.path = new_run_dir(self.report_dir)
        return self.path

    def export(self) -> None:
        """The xdist controller: create the run now and hand it to the workers through RUN_DIR_ENV."""
        self.ensure()
        self._saved_env, self._exported = os.environ.get(RUN_DIR_ENV), True
        os.environ[RUN_DIR_ENV] = str(self.path)

    def restore_env(self) -> None:
        if not self._exported:
            return
        if self._saved_env is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = self._saved_env


class ModelDir:
    """The model path handed to vLLM; kit:* models are built once per process into a temp dir (see cleanup)."""

    def __init__(self, model: str):
        self.model = model
        self.built: Path | None = None
        self._tmp: Path | None = None

    def path(self, notices: list[str]) -> str:
        if not self.model.startswith("kit:"):
            local = Path(self.model).expanduser()
            if not local.exists() and stored_vlm(self.model):
                return hub_id(stored_vlm(self.model))  # the short name's Hugging Face repository
            return str(local.resolve()) if local.exists() else self.model
        if self.built is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="memcheck-kit-"))
            self.built = self._build(self._tmp / self.model.removeprefix("kit:"))
            notices.append(f"built {self.model} into {self.built}")
        return str(self.built)

    def _build(self, out: Path) -> Path:
        if self.model == "kit:tiny-text":
            return Path(build_tiny_text(out))
        if self.model.startswith("kit:minicpm-v-4_5"):  # kit/minicpmv26.py writes 4.5 too (remote-code processor)
            size = "tiny" if self.model.endswith("-tiny") else "real"
            return Path(build_minicpmv26(out, size=size, weights="none", version="4.5"))
        if stored_vlm(self.model):
            return build_vlm_kit(stored_vlm(self.model), out)
        size = "tiny" if self.model.endswith("-tiny") else "real"
        return Path(build_minicpmv26(out, size=size, weights="none"))

    def cleanup(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


def reroot(config, args: list) -> None:
    """Redo pytest's rootdir and ini-file choice once this plugin's options are known. pytest picks them
    (_pytest/config/__init__.py Config._preparse -> findpaths.determine_setup, pytest 9.2) before it loads pytest11
    entry points, so the value of `--matrix /elsewhere/m.toml` (space form) counts as a path to test: the rootdir
    moves to its directory, the project's ini (testpaths, markers, addopts) goes unread and every test module under
    the working directory is collected (a test imported into two modules runs twice). With the values known, the
    choice is made again from the true positional arguments; when it differs, the config takes it (its ini's addopts
    prepended to `args`, as pytest does). Called from pytest_load_initial_conftests, before any conftest loads."""
    import inspect

    from _pytest.config.findpaths import determine_setup

    ns = config.known_args_namespace
    values = {str(getattr(ns, f"memcheck_{name}", None) or "") for name, kwargs, *_ in OPTIONS
              if not kwargs.get("action")} - {""}
    if not values & {str(a) for a in args}:  # no option value that pytest could have taken for a path
        return
    given = {"inifile": ns.inifilename, "override_ini": ns.override_ini, "args": ns.file_or_dir,
             "rootdir_cmd_arg": ns.rootdir or None, "invocation_dir": config.invocation_params.dir}
    wanted = inspect.signature(determine_setup).parameters
    rootpath, inipath, inicfg, *_ = determine_setup(**{k: v for k, v in given.items() if k in wanted})
    if (rootpath, inipath) == (config.rootpath, config.inipath):
        return
    if not all(hasattr(config, a) for a in ("_rootpath", "_inipath", "_inicfg", "_inicache")):  # another pytest
        import warnings

        warnings.warn(f"vllm-memcheck: pytest took an option's value for a test path (rootdir {config.rootpath}); "
                      "write such options as --matrix=PATH", stacklevel=1)
        return
    old_cut = str(config.inipath.parent if config.inipath else config.rootpath)
    had_addopts = bool(config.getini("addopts"))
    config._rootpath, config._inipath, config._inicfg = rootpath, inipath, inicfg
    config._inicache.clear()
    config._parser.extra_info.update(rootdir=str(rootpath), inifile=str(inipath))
    if not had_addopts and config.getini("addopts"):
        args[:] = list(config.getini("addopts")) + args
        config.known_args_namespace = config._parser.parse_known_args(args, namespace=copy.copy(config.option))
    if ns.confcutdir in (None, old_cut):  # pytest's default, not the user's --confcutdir
        config.known_args_namespace.confcutdir = str(inipath.parent if inipath else rootpath)
