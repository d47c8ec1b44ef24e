"""The pytest plugin: every matrix combination becomes one `gpu`-marked start-up test (root conftest.py loads it).

Shape follows pytest-memray: module-level `pytest_addoption` (one option group, every CLI option has an ini
twin of the same name with underscores), `pytest_configure` builds one `Manager` that holds all state and
hooks and registers it with the plugin manager; markers come from the MARKERS table.

One test = one engine start (diagnostics.engine.launch.run_start, own process group, timed through
pytest-benchmark's pedantic mode). Its result is appended to `<report-dir>/<run>/results.jsonl` at once.

What a test asserts (the expected outcome comes from the matrix, else from the estimator when clear-cut):
  * outcome: OOM-free start-up, or the expected failure (then the test is xfail with the diagnosis);
  * GPU cards: (a) the profile-phase peak (weights + profile run, before the KV cache) <= the card's
    profile_threshold_gib; (b) the overall device peak <= gpu_memory_utilization x total + headroom_gib
    (with kv_cache_memory_bytes: profile-phase peak + KV bytes + headroom). A matrix may override both per card.
  * cpu card (vLLM's CPU backend): peaks are the summed RSS of the process tree. The cpu profile has no
    thresholds of its own (node 0's total is only known at run time, and the RSS of three Python processes is
    not what `gpu_memory_utilization` grants), so only thresholds the matrix states for card "cpu" are
    asserted; the util check is skipped. CPU runs need a CPU-capable matrix (enforce_eager, float32,
    kv_cache_memory_bytes, a tiny model): see tests/data/matrices/cpu-tiny.toml.
A failing test's message is the diagnosis (one paragraph); the numbers are in its "vllm-memcheck" section.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

from diagnostics.errors import UsageError
from diagnostics.outcomes import MEMORY_FAILURES

MANAGER_NAME = "vllm-memcheck-manager"
RUN_DIR_ENV = "VLLM_MEMCHECK_RUN_DIR"  # the xdist controller hands its run directory to the workers
DEFAULT_MODEL = "openbmb/MiniCPM-V-2_6"
DEFAULT_REGRESSION_SPEC = "peak:5%,kv_tokens:5%,startup:20%"
DEFAULT_ENGINE_TIMEOUT_S = 900.0
DEFAULT_IMAGE_SIZE = (1344, 1344)  # MiniCPM-V-2_6 at its slicing maximum (9 slices + the overview)
COMBINATION_FIXTURE = "memcheck_combination"
KIT_MODELS = ("kit:minicpm-v-2_6", "kit:minicpm-v-2_6-tiny", "kit:tiny-text")
LOAD_FORMATS = ("auto", "dummy")

MARKERS = {
    "gpu": "starts a real vLLM engine (GPU; vLLM's CPU backend with --card=cpu); skips without a usable GPU",
}

# (name, CLI kwargs, ini type, help). The ini twin is memcheck_<name>: memcheck_card, memcheck_report_dir, ...
# (prefixed, because bare names like `model` or `resume` would collide with other plugins' ini keys).
INI_PREFIX = "memcheck_"
OPTIONS = (
    ("card", {"metavar": "NAME|auto|cpu"}, "string",
     "card profile to measure against (3090, l4, a100-80, ...); auto: detect through NVML (default); "
     "cpu: vLLM's CPU backend"),
    ("cards", {"metavar": "FILE"}, "string", "TOML file adding or overriding card profiles ([cards.NAME])"),
    ("model", {"metavar": "ID|PATH"}, "string",
     f"model to start (default: the matrix's, else {DEFAULT_MODEL}); {', '.join(KIT_MODELS)} build a "
     "local checkpoint directory on the fly"),
    ("matrix", {"metavar": "FILE"}, "string", "TOML matrix of settings (default: the shipped MiniCPM-V-2_6 matrix)"),
    ("load_format", {"choices": LOAD_FORMATS}, "string", "auto (real weights) or dummy (random weights, no download)"),
    ("engine_timeout", {"metavar": "SECONDS", "type": float}, "string",
     f"kill a start-up (its whole process group) after this many seconds (default {DEFAULT_ENGINE_TIMEOUT_S:g})"),
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
)

MANAGER_KEY = pytest.StashKey["Manager"]()


def check_model_path(model: str) -> None:
    """A --model that names a local path (absolute, ./, ../, ~) must be a directory with config.json; a hub id
    (org/name) is left to vLLM. Caught here so a typo is one line, not 48 failed starts."""
    if not model.startswith(("/", ".", "~")) and not os.path.isabs(model):
        return
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        what = "has no config.json" if path.is_dir() else "does not exist"
        raise UsageError(f"model path {model!r} {what}; accepted: a local model directory with config.json, a hub "
                         f"id (org/name), or {', '.join(KIT_MODELS)}")


def vllm_missing() -> str | None:
    """Why engine starts cannot run here (vLLM not installed), or None. A module function so that a conftest
    standing in for the launcher can stand in for vLLM's presence too."""
    if importlib.util.find_spec("vllm") is None:
        return ("vLLM is not installed; install the version to test (scripts/install.sh gpu VERSION, or cpu) "
                "or run `python -m diagnostics plan` for a prediction")
    return None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vllm-memcheck", "vLLM start-up memory (vllm-memcheck)")
    for name, kwargs, ini_type, help_text in OPTIONS:
        extra = {} if kwargs.get("action") else {"default": None}
        group.addoption(f"--{name.replace('_', '-')}", dest=f"memcheck_{name}", help=help_text.replace("%", "%%"), **kwargs, **extra)
        parser.addini(f"{INI_PREFIX}{name}", f"{help_text} (ini twin of --{name.replace('_', '-')})", type=ini_type,
                      default=False if ini_type == "bool" else "")


def option(config: pytest.Config, name: str):
    """The CLI value when given, else the ini value, else None (also for an empty ini string)."""
    value = config.getoption(f"memcheck_{name}", None)
    if value not in (None, False):
        return value
    value = config.getini(f"{INI_PREFIX}{name}")
    return value if value not in ("", None, []) else (False if isinstance(value, bool) else None)


def pytest_configure(config: pytest.Config) -> None:
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    if config.option.help:
        return
    try:
        manager = Manager(config)
    except UsageError as err:
        raise pytest.UsageError(str(err)) from None
    config.stash[MANAGER_KEY] = manager
    config.pluginmanager.register(manager, MANAGER_NAME)


@pytest.fixture
def memcheck(request: pytest.FixtureRequest) -> "Manager":
    """The session's Manager: `memcheck.start(combination, benchmark)`, then `memcheck.verify(measurement)`."""
    return request.config.stash[MANAGER_KEY]


# -- detection -------------------------------------------------------------------------------------------------
def detect_gpu() -> tuple[str | None, str | None]:
    """(name of the GPU the starts will run on, None) through NVML, or (None, why not). The device is the one the
    sampler measures: the first of CUDA_VISIBLE_DEVICES (index or UUID), GPU 0 by default."""
    from diagnostics.engine.sampler import NoGPU, nvml_text, open_nvml

    try:
        nvml, handle = open_nvml()
    except NoGPU as err:
        return None, err.reason
    try:
        return nvml_text(nvml.nvmlDeviceGetName(handle)), None
    except nvml.NVMLError as err:
        return None, str(err)
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            pass


def no_gpu_line(why: str, card_name: str | None) -> str:
    return (f"no usable GPU ({why}); run `python -m diagnostics plan --card {card_name or '3090'}` for a "
            "prediction, or --card=cpu for vLLM's CPU backend")


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- one measurement -------------------------------------------------------------------------------------------
@dataclass
class Measurement:
    """What one start produced and what the test makes of it."""

    combination: object
    record: dict  # the results.jsonl line
    status: str  # "passed" | "failed" | "xfail" | "recorded"
    diagnosis: str
    numbers: str = ""
    notes: list[str] = field(default_factory=list)


def classify(result, record) -> str:
    """The outcome of a start: the launcher's rule (timeout / signal beat the log), then what the log could
    not tell: an unrecognised log of a clean exit is "ok"; of a failed exit or a failed request, "error"."""
    from diagnostics.engine.launch import outcome_of

    outcome = outcome_of(result, record.outcome)
    request_failed = bool(result.request) and not result.request.get("ok", True)
    if outcome == "ok" and request_failed:
        return "error"
    if outcome != "unknown":
        return outcome
    return "ok" if result.returncode == 0 and not request_failed else "error"


def matches(expected: str, outcome: str, basis: str) -> bool:
    """Did the expected thing happen? "oom" (and any estimator-predicted memory failure) = any memory failure."""
    if expected == outcome:
        return True
    if expected == "oom" or (basis == "estimator" and expected in MEMORY_FAILURES):
        return outcome in MEMORY_FAILURES
    return False


PEAK_TERMS = ("weights", "non_torch", "activation_peak")  # what the estimator's start-up peak is made of


def plan_bounds(plan) -> tuple[float, float]:
    """(low, high) of the predicted peak: the Plan's own bounds when it has them, else the peak moved by the
    uncertainty of the terms it is made of (weights + non-torch + activation peak; the CUDA context is exact)."""
    low = getattr(plan, "peak_low_gib", None)
    high = getattr(plan, "peak_high_gib", None)
    if low is not None and high is not None:
        return float(low), float(high)
    terms = [plan.components[name] for name in PEAK_TERMS if name in plan.components]
    below = sum(max(t.value_gib - t.low_gib, 0.0) for t in terms)
    above = sum(max(t.high_gib - t.value_gib, 0.0) for t in terms)
    return plan.peak_gib - below, plan.peak_gib + above


def fmt(x: float | None, unit: str = "GiB") -> str:
    return "-" if x is None else f"{x:.2f} {unit}"


class Manager:
    """All plugin state and every hook but addoption/configure (registered as MANAGER_NAME)."""

    def __init__(self, config: pytest.Config):
        from diagnostics.cards import CPU_CARD, get_card
        from diagnostics.matrix import SHIPPED_MATRIX, load_matrix

        self.config = config
        self.is_worker = hasattr(config, "workerinput")
        self.notices: list[str] = []
        self.skip_reason: str | None = None
        self.cards_file = option(config, "cards")
        card_name = str(option(config, "card") or "auto").strip().lower()
        self.card = None
        self.gpu_name = None
        if card_name == CPU_CARD:
            self.card = get_card(CPU_CARD)
        else:
            named = None if card_name == "auto" else get_card(card_name, self.cards_file)
            self.gpu_name, why = detect_gpu()
            if self.gpu_name is None:
                self.skip_reason = no_gpu_line(why, named.name if named else None)
                self.card = named
            else:
                self.card = self._check_card(named, self.gpu_name)
        if self.skip_reason is None:
            self.skip_reason = vllm_missing()

        self.matrix = load_matrix(option(config, "matrix") or SHIPPED_MATRIX)
        self.model = option(config, "model") or self.matrix.model or DEFAULT_MODEL
        if self.model.startswith("kit:") and self.model not in KIT_MODELS:
            raise UsageError(f"unknown model kit {self.model!r}; accepted: {', '.join(KIT_MODELS)}")
        check_model_path(self.model)
        load_format = option(config, "load_format") or "auto"
        if load_format not in LOAD_FORMATS:
            raise UsageError(f"bad load_format {load_format!r}; accepted: {', '.join(LOAD_FORMATS)}")
        # the MiniCPM-V kits are written without weights: only random (dummy) weights can load them
        self.load_format = "dummy" if self.model.startswith("kit:minicpm") else load_format
        timeout = option(config, "engine_timeout")
        try:
            self.engine_timeout = float(timeout) if timeout is not None else DEFAULT_ENGINE_TIMEOUT_S
        except ValueError:
            raise UsageError(f"bad engine_timeout {timeout!r}; accepted: a number of seconds") from None
        if self.engine_timeout <= 0:
            raise UsageError(f"bad engine_timeout {timeout!r}; accepted: a positive number of seconds")
        # absolute: the engine child runs in another working directory
        self.report_dir = Path(option(config, "report_dir") or "reports").resolve()
        self.resume = bool(option(config, "resume"))
        self.baseline_dir = Path(option(config, "baseline_dir") or ".memcheck/baselines")
        self.save_baseline = option(config, "save_baseline")
        self.compare_baseline = option(config, "compare_baseline")
        self.tolerances = None
        if self.compare_baseline or option(config, "fail_on_regression"):
            from diagnostics.baseline import parse_tolerances

            self.tolerances = parse_tolerances(option(config, "fail_on_regression") or DEFAULT_REGRESSION_SPEC)

        self.run_dir: Path | None = None
        self.finished: set[str] = set()
        self._prepare_run_dir()
        self._model_dir: Path | None = None
        self._kit_tmp: Path | None = None
        self._machine_info: dict | None = None
        self._model_spec = None
        self.comparison_text: list[str] = []
        self.report_paths: list[Path] = []

    # -- configure-time checks -------------------------------------------------------------------------------
    def _check_card(self, named, gpu_name: str):
        from diagnostics.cards import card_for_gpu_name, list_cards, load_cards_toml

        cards = list_cards()
        if self.cards_file:
            extra = load_cards_toml(self.cards_file)
            cards = [c for c in cards if c.name not in extra] + list(extra.values())
        detected = card_for_gpu_name(gpu_name, cards)
        if named is None:
            if detected is None:
                raise UsageError(f"--card=auto: NVML reports {gpu_name!r}, which matches no card profile; pass "
                                 "--card NAME or describe it in a --cards FILE ([cards.NAME] total_gib = ...)")
            return detected
        if not named.nvml_names:  # a card from --cards without nvml_names: nothing to check against
            self.notices.append(f"card {named.name} has no nvml_names; not checked against NVML's {gpu_name!r}")
        elif not any(sub.lower() in gpu_name.lower() for sub in named.nvml_names):
            message = (f"--card={named.name} ({named.label}) but NVML reports {gpu_name!r}"
                       f"{f' (card {detected.name})' if detected else ''}; pass the right --card, or "
                       "--allow-card-mismatch to measure against the named card anyway")
            if not option(self.config, "allow_card_mismatch"):
                raise UsageError(message)
            self.notices.append("warning: " + message)
        return named

    def _prepare_run_dir(self) -> None:
        """--resume: the latest run. xdist: the controller creates the run now and exports it to the workers."""
        from diagnostics.results import finished_ids, latest_run_dir, new_run_dir

        inherited = os.environ.get(RUN_DIR_ENV) if self.is_worker else None
        if inherited:
            self.run_dir = Path(inherited)
        elif self.resume:
            self.run_dir = latest_run_dir(self.report_dir)
            if self.run_dir is None:
                self.notices.append(f"--resume: no earlier run under {self.report_dir}/; starting a new one")
        if self.run_dir is not None:
            self.finished = finished_ids(self.run_dir) if self.resume else set()
        if not self.is_worker and self.skip_reason is None and self._uses_xdist():
            self.run_dir = self.run_dir or new_run_dir(self.report_dir)
            self._saved_env = os.environ.get(RUN_DIR_ENV)
            os.environ[RUN_DIR_ENV] = str(self.run_dir)

    def _uses_xdist(self) -> bool:
        return bool(self.config.getoption("numprocesses", None)) or self.config.getoption("dist", "no") != "no"

    def ensure_run_dir(self) -> Path:
        from diagnostics.results import new_run_dir

        if self.run_dir is None:
            self.run_dir = new_run_dir(self.report_dir)
        return self.run_dir

    # -- lazily built inputs ---------------------------------------------------------------------------------
    def model_dir(self) -> str:
        """The model path handed to vLLM; kit:* models are built once per process into a temp dir."""
        if not self.model.startswith("kit:"):
            local = Path(self.model).expanduser()
            return str(local.resolve()) if local.exists() else self.model
        if self._model_dir is None:
            self._kit_tmp = Path(tempfile.mkdtemp(prefix="memcheck-kit-"))
            out = self._kit_tmp / self.model.removeprefix("kit:")
            if self.model == "kit:tiny-text":
                from diagnostics.kit.tiny_text import build_tiny_text

                self._model_dir = Path(build_tiny_text(out))
            else:
                from diagnostics.kit import build_minicpmv26

                size = "tiny" if self.model.endswith("-tiny") else "real"
                self._model_dir = Path(build_minicpmv26(out, size=size, weights="none"))
            self.notices.append(f"built {self.model} into {self._model_dir}")
        return str(self._model_dir)

    def machine_info(self) -> dict:
        if self._machine_info is None:
            try:
                from diagnostics.engine.machine import machine_info
            except ImportError:
                self._machine_info = {"card": self.card.name if self.card else None}
            else:
                self._machine_info = machine_info(self.card)
        return self._machine_info

    def model_spec(self):
        if self._model_spec is None:
            from diagnostics.models import get_model

            try:
                # the real-size kit has the built-in shapes; any other kit or path: read its config.json
                real_shapes = self.model == "kit:minicpm-v-2_6" or not self.model.startswith("kit:")
                self._model_spec = get_model(self.model if real_shapes else self.model_dir())
            except UsageError:
                self._model_spec = False
        return self._model_spec or None

    def sends_image(self, settings: dict) -> bool | None:
        """A vision-language model's request carries an image unless the settings allow none."""
        model = self.model_spec()
        if model is None:
            return None
        limit = (settings.get("limit_mm_per_prompt") or {}).get("image")
        return model.vision is not None and (limit is None or limit > 0)

    def settings_for(self, combination) -> dict:
        return {**self.matrix.defaults, **combination.settings}

    # -- what to expect --------------------------------------------------------------------------------------
    def expectation(self, combination, settings: dict) -> tuple[str | None, str]:
        """(expected outcome or None, basis): the matrix's word, else the estimator's when clear-cut."""
        if combination.expect:
            return combination.expect, "matrix"
        if self.card is None or getattr(self.card, "is_cpu", False):
            return None, "not asserted: the estimator has no CPU-backend model"
        model = self.model_spec()
        if model is None:
            return None, "not asserted: the estimator does not know this model"
        try:
            from diagnostics.estimator import plan
        except ImportError:
            return None, "not asserted: diagnostics.estimator is not available"
        try:
            prediction = plan(model, self.card, self.machine_info().get("vllm"), "llm", settings)
        except UsageError as err:
            return None, f"not asserted: the estimator cannot plan this ({err})"
        low, high = plan_bounds(prediction)
        total = self.card.total_gib
        if prediction.verdict == "ok" and high < total:
            return "ok", "estimator"
        if prediction.verdict in MEMORY_FAILURES and low > total:
            return prediction.verdict, "estimator"
        return None, (f"not asserted: estimator says {prediction.verdict} with peak {low:.2f}-{high:.2f} GiB "
                      f"against {total:.2f} GiB (not clear-cut)")

    def limits(self, combination, settings: dict, profile_peak: float | None) -> tuple[float | None, float | None]:
        """(profile-phase limit, overall limit) in GiB for this combination on this card; None = not asserted."""
        card = self.card
        own = combination.thresholds.get(card.name, {})
        profile_limit = own.get("profile_peak_gib")
        peak_limit = own.get("peak_gib")
        if getattr(card, "is_cpu", False):
            return profile_limit, peak_limit
        if profile_limit is None and card.profile_threshold_gib > 0:
            profile_limit = card.profile_threshold_gib
        if peak_limit is None:
            kv_bytes = settings.get("kv_cache_memory_bytes")
            if kv_bytes:
                base = profile_peak if profile_peak is not None else profile_limit
                peak_limit = None if base is None else base + kv_bytes / (1 << 30) + card.headroom_gib
            else:
                util = settings.get("gpu_memory_utilization", self.default_utilization(settings))
                peak_limit = util * card.total_gib + card.headroom_gib
        return profile_limit, peak_limit

    def default_utilization(self, settings: dict) -> float:
        try:
            from diagnostics.settings import resolve

            value = resolve(self.model_spec(), self.card, self.machine_info().get("vllm"), "llm", settings)
            return float(value.get("gpu_memory_utilization", 0.9))
        except (ImportError, UsageError, TypeError, ValueError):
            return 0.9

    # -- one start -------------------------------------------------------------------------------------------
    def start(self, combination, benchmark=None) -> Measurement:
        """Start the engine once for `combination`, record the result, and judge it (see verify)."""
        from diagnostics.engine.launch import DeviceNotClean, StartSpec, run_start
        from diagnostics.engine.sampler import NoGPU

        run_dir = self.ensure_run_dir()
        settings = self.settings_for(combination)
        spec = StartSpec(model=self.model_dir(), settings=settings, card=self.card, load_format=self.load_format,
                         timeout_s=self.engine_timeout, request=combination.request, image_size=DEFAULT_IMAGE_SIZE,
                         env={}, log_path=run_dir / "logs" / f"{combination.id}.log",
                         timeline_path=run_dir / "timelines" / f"{combination.id}.csv", id=combination.id,
                         image=self.sends_image(settings) if combination.request else None)
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        spec.timeline_path.parent.mkdir(parents=True, exist_ok=True)
        started_at = utc_now()
        try:
            if benchmark is not None:
                result = benchmark.pedantic(run_start, args=(spec,), rounds=1, iterations=1)
            else:
                result = run_start(spec)
        except NoGPU as err:
            pytest.skip(no_gpu_line(str(err), self.card.name if self.card else None))
        except DeviceNotClean as err:
            pytest.exit(f"vllm-memcheck: {err}", returncode=pytest.ExitCode.TESTS_FAILED)
        measurement = self.judge(combination, settings, result, started_at)
        if benchmark is not None:
            benchmark.extra_info.update({"combination": combination.id, "outcome": measurement.record["outcome"],
                                         "startup_s": result.startup_s,
                                         "peak_gib": measurement.record["peak_device_gib"]
                                         or measurement.record["peak_process_gib"]})
        from diagnostics.results import ResultWriter

        ResultWriter(run_dir).append(measurement.record)
        self._current_measurement = measurement  # picked up by pytest_runtest_makereport of this call
        return measurement

    def judge(self, combination, settings: dict, result, started_at: str) -> Measurement:
        from diagnostics.explainer import explain_record
        from diagnostics.logreader import read_log

        log_text = Path(result.log_path).read_text(encoding="utf-8", errors="replace") \
            if Path(result.log_path).is_file() else ""
        log = read_log(log_text)
        outcome = classify(result, log)
        # the log echoes only some settings (the CPU backend hardly any); the explainer needs the ones we set
        log.settings.update({k: v for k, v in settings.items() if k not in log.settings})
        try:
            explanation = explain_record(log, model=self.model_spec(), card=self.card)
        except UsageError:
            explanation = None
        expected, basis = self.expectation(combination, settings)
        is_cpu = getattr(self.card, "is_cpu", False)
        peak = result.peak_process_gib if is_cpu else result.peak_device_gib
        profile_peak = getattr(result, "before_kv_peak_gib", None)
        if profile_peak is None:
            before_kv = [result.phase_peaks_gib.get(p) for p in ("weights", "profile")]
            profile_peak = max((v for v in before_kv if v is not None), default=None)
        profile_limit, peak_limit = self.limits(combination, settings, profile_peak)

        reasons: list[str] = []
        notes: list[str] = []
        if expected is not None and not matches(expected, outcome, basis):
            reasons.append(f"expected {expected} ({basis}), got {outcome} in the {log.phase} phase")
        elif expected is None and outcome in MEMORY_FAILURES:
            notes.append(f"{outcome} recorded, {basis}")
        elif expected is None and outcome != "ok":
            # an error, crash, timeout or unreadable log measured nothing about memory: never a pass
            reasons.append(f"the start did not come up and not for memory: {outcome}"
                           + (f" ({log.error_line.strip()[:300]})" if log.error_line else ""))
        if outcome == "ok":
            for label, value, limit in (("profile-phase peak", profile_peak, profile_limit),
                                        ("overall peak", peak, peak_limit)):
                if limit is None:
                    continue
                if value is None:
                    notes.append(f"{label} not measured (limit {limit:.2f} GiB)")
                elif value > limit:
                    reasons.append(f"{label} {value:.2f} GiB > {limit:.2f} GiB allowed on {self.card.name}")
        expected_failure = expected is not None and expected != "ok" and not reasons
        passed = not reasons
        status = "failed" if not passed else "xfail" if expected_failure else \
            "recorded" if expected is None else "passed"

        diagnosis = self.diagnosis_text(combination, outcome, log, explanation, reasons, result)
        vllm_numbers = dict(log.numbers)
        record = {
            "id": combination.id,
            "scenario": combination.scenario,
            "model": self.model,
            "model_path": self.model_dir(),
            "load_format": self.load_format,
            "settings": settings,
            "card": {"name": self.card.name, "total_gib": self.machine_info().get("gpu_total_gib",
                                                                                 self.card.total_gib),
                     "profile_threshold_gib": self.card.profile_threshold_gib,
                     "headroom_gib": self.card.headroom_gib},
            "machine_info": self.machine_info(),
            "expected": expected,
            "expected_basis": basis,
            "outcome": outcome,
            "phase": log.phase,
            "passed": passed,
            "status": status,
            "reasons": reasons,
            "notes": notes,
            "limits_gib": {"profile_peak": profile_limit, "peak": peak_limit},
            "profile_peak_gib": profile_peak,
            "startup_s": result.startup_s,
            "wall_s": result.wall_s,
            "lock_wait_s": getattr(result, "lock_wait_s", None),  # waiting for another engine start to finish
            "returncode": result.returncode,
            "signal": result.signal,
            "timed_out": result.timed_out,
            "peak_device_gib": result.peak_device_gib,
            "peak_process_gib": result.peak_process_gib,
            "phase_peaks_gib": dict(result.phase_peaks_gib),
            "torch_peak_gib": result.torch_peak_gib,
            "vllm_numbers": vllm_numbers,
            "kv_cache_gib": vllm_numbers.get("kv_cache_gib"),
            "kv_cache_tokens": vllm_numbers.get("kv_cache_tokens"),
            "weights_gib": vllm_numbers.get("weights_gib"),
            "activation_peak_gib": vllm_numbers.get("activation_peak_gib"),
            "diagnosis": {
                "summary": explanation.summary if explanation else diagnosis,
                "culprits": [{"setting": c.setting, "value": c.value, "suggested": c.suggested, "why": c.why}
                             for c in (explanation.culprits if explanation else [])],
                "error_line": log.error_line,
            },
            "request": result.request,
            "log_file": os.path.relpath(result.log_path, self.run_dir),
            "timeline_file": os.path.relpath(result.timeline_path, self.run_dir),
            "started_at": started_at,
            "finished_at": utc_now(),
        }
        numbers = "\n".join([
            f"combination      {combination.id}  settings {json.dumps(settings, sort_keys=True)}",
            f"card             {self.card.name} ({self.card.label})  total {fmt(record['card']['total_gib'])}",
            f"outcome          {outcome} (phase {log.phase}); expected {expected or '-'} [{basis}]",
            f"peak device      {fmt(result.peak_device_gib)}   peak process {fmt(result.peak_process_gib)}",
            f"profile peak     {fmt(profile_peak)}   limit {fmt(profile_limit)}",
            f"overall limit    {fmt(peak_limit)}",
            f"KV cache         {fmt(record['kv_cache_gib'])}   tokens {record['kv_cache_tokens'] or '-'}",
            f"start-up         {fmt(result.startup_s, 's')}   wall {fmt(result.wall_s, 's')}",
            f"log              {result.log_path}",
        ])
        return Measurement(combination, record, status, diagnosis, numbers, notes)

    def diagnosis_text(self, combination, outcome, log, explanation, reasons, result) -> str:
        parts = [f"{combination.id} on {self.card.name}: {outcome}"
                 + (f" in the {log.phase} phase" if log.phase != "unknown" else "") + "."]
        if reasons:
            parts.append("Failed: " + "; ".join(reasons) + ".")
        if explanation and explanation.summary:
            parts.append(explanation.summary.rstrip(".") + ".")
        culprits = explanation.culprits if explanation else []
        if culprits:
            parts.append("Culprits: " + ", ".join(f"{c.setting}={c.value} (-> {c.suggested})" for c in culprits) + ".")
        elif log.error_line and outcome != "ok":
            parts.append(f"vLLM said: {log.error_line.strip()[:300]}")
        parts.append(f"Log: {result.log_path}")
        return " ".join(parts)

    def verify(self, measurement: Measurement) -> None:
        """Turn a measurement into the test's verdict: fail with the diagnosis, xfail, or pass."""
        if measurement.status == "failed":
            pytest.fail(measurement.diagnosis, pytrace=False)
        if measurement.status == "xfail":
            pytest.xfail(measurement.diagnosis)

    # -- hooks -----------------------------------------------------------------------------------------------
    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        card = self.card.name if self.card else "auto"
        lines = [f"vllm-memcheck: card {card}, model {self.model} (load_format {self.load_format}), "
                 f"matrix {self.matrix.path} ({len(self.matrix.combinations)} combinations)"]
        if self.skip_reason:
            lines.append(f"vllm-memcheck: gpu tests skip: {self.skip_reason}")
        if self.resume and self.run_dir:
            lines.append(f"vllm-memcheck: resuming {self.run_dir} ({len(self.finished)} finished)")
        return lines + [f"vllm-memcheck: {n}" for n in self.notices]

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if COMBINATION_FIXTURE in metafunc.fixturenames:
            metafunc.parametrize(COMBINATION_FIXTURE, self.matrix.combinations, ids=self.matrix.ids())

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        for item in items:
            if item.get_closest_marker("gpu") is None:
                continue
            if self.skip_reason:
                item.add_marker(pytest.mark.skip(reason=self.skip_reason))
                continue
            combination = getattr(item, "callspec", None) and item.callspec.params.get(COMBINATION_FIXTURE)
            if combination is not None and combination.id in self.finished:
                item.add_marker(pytest.mark.skip(
                    reason=f"already recorded in {self.run_dir / 'results.jsonl'} (--resume)"))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        measurement = self.__dict__.pop("_current_measurement", None) if call.when == "call" else None
        if measurement is not None:
            report.sections.append(("vllm-memcheck", measurement.numbers))
            if report.failed:
                report.longrepr = measurement.diagnosis
        return report

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker or self.run_dir is None or not (self.run_dir / "results.jsonl").is_file():
            return
        from diagnostics.results import load_results

        results = load_results(self.run_dir)
        if not results:
            return
        try:
            from diagnostics.report import write_reports
        except ImportError:
            write_reports = None
        if write_reports is not None:
            self.report_paths = list(write_reports(self.run_dir))
        self._baselines(session, results)

    def _baselines(self, session: pytest.Session, results: list[dict]) -> None:
        if not (self.save_baseline or self.compare_baseline):
            return
        from diagnostics.baseline import compare, format_table, load_baseline, save_baseline

        if self.compare_baseline:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loaded = load_baseline(self.compare_baseline, self.baseline_dir, self.machine_info())
            if loaded is None:
                path = save_baseline(results, self.compare_baseline, self.baseline_dir)
                self.comparison_text.append(f"no baseline {self.compare_baseline!r} yet under {self.baseline_dir}/; "
                                            f"recorded this run as it: {path}")
            else:
                meta, old = loaded
                comparison = compare(old, results, self.tolerances)
                for message in [*meta.get("warnings", []), *comparison.warnings]:
                    self.comparison_text.append(f"warning: {message}")
                self.comparison_text.append(f"compared with baseline {meta.get('path')}:")
                self.comparison_text.append(format_table(comparison))
                if comparison.regressed:
                    self.comparison_text.append("regression beyond tolerance: the session fails")
                    session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.save_baseline:
            path = save_baseline(results, self.save_baseline, self.baseline_dir)
            self.comparison_text.append(f"saved baseline {self.save_baseline!r}: {path}")

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.is_worker:
            return
        from diagnostics.results import load_results

        results = load_results(self.run_dir) if self.run_dir is not None else []
        if not results:
            if self.save_baseline or self.compare_baseline:
                terminalreporter.write_line("vllm-memcheck: no start-up results in this session; no baseline "
                                            "saved or compared")
            return
        terminalreporter.write_sep("=", f"vllm-memcheck: {len(results)} combinations in {self.run_dir}")
        terminalreporter.write_line(summary_table(results))
        for path in self.report_paths:
            terminalreporter.write_line(f"report: {path}")
        for line in self.comparison_text:
            terminalreporter.write_line(line)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if hasattr(self, "_saved_env"):
            if self._saved_env is None:
                os.environ.pop(RUN_DIR_ENV, None)
            else:
                os.environ[RUN_DIR_ENV] = self._saved_env
        if self._kit_tmp is not None:
            shutil.rmtree(self._kit_tmp, ignore_errors=True)


SUMMARY_HEADERS = ("id", "outcome", "expected", "peak dev GiB", "peak proc GiB", "profile GiB", "KV GiB",
                   "KV tokens", "start-up s", "result", "culprit")


def summary_table(results: list[dict]) -> str:
    """One row per combination (the terminal summary)."""
    from tabulate import tabulate

    def num(x, digits=2):
        return "-" if x is None else f"{x:.{digits}f}"

    rows = []
    for r in results:
        culprits = (r.get("diagnosis") or {}).get("culprits") or []
        culprit = ", ".join(f"{c['setting']}={c.get('value')}->{c.get('suggested')}" for c in culprits[:2]) or "-"
        rows.append((r.get("id"), r.get("outcome"), r.get("expected") or "-", num(r.get("peak_device_gib")),
                     num(r.get("peak_process_gib")), num(r.get("profile_peak_gib")), num(r.get("kv_cache_gib")),
                     r.get("kv_cache_tokens") or "-", num(r.get("startup_s"), 1),
                     r.get("status") or ("passed" if r.get("passed") else "failed"), culprit))
    return tabulate(rows, headers=SUMMARY_HEADERS, tablefmt="simple")
