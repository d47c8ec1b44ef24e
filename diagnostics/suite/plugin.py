"""The pytest plugin: every matrix combination becomes one `gpu`-marked start-up test (a `pytest11` entry point).

Hook wiring only, in pytest-memray's shape: module-level `pytest_addoption` (suite/run.py's OPTIONS table, every
CLI option with an ini twin `memcheck_<name>`); one `Manager` holds the session's state and hooks, built at
configure when the session asks for it (`asked_for`), else when a collected test needs a memcheck fixture, and
registered with the plugin manager; markers come from the MARKERS table. What a test asserts and its failure text are suite/judge.py's; the results.jsonl record is suite/results.py's; the
terminal table is report/terminal.py's.

One test = one engine start (diagnostics.engine.launch.run_start, own process group, timed through
pytest-benchmark's pedantic mode). Its result is appended to `<report-dir>/<run>/results.jsonl` at once.
The cpu card (vLLM's CPU backend) measures the summed RSS of the process tree and asserts only the thresholds a
matrix states for card "cpu"; --card=cpu defaults to the CPU matrix diagnostics/data/cpu-tiny.toml. A failing test's message is the diagnosis (one paragraph); the numbers are in its "vllm-memcheck" section.
"""

from __future__ import annotations

import importlib.util
import signal
from pathlib import Path

import pytest

from diagnostics.cards import CPU_CARD, check_card_against_nvml, get_card, load_cards_toml
from diagnostics.engine import gpus as devices, launch
from diagnostics.engine.machine import machine_info
from diagnostics.engine.nvml import NoGPU, gpu_name, list_gpus
from diagnostics.errors import UsageError
from diagnostics.explain import explain_record
from diagnostics.models import get_model
from diagnostics.report import write_reports
from diagnostics.report.terminal import accuracy_table, spread_table, summary_table
from diagnostics.settings import dtype_for_card, start_refusal
from diagnostics.suite import judge as verdicts
from diagnostics.suite import run, starts
from diagnostics.suite.starts import DEFAULT_IMAGE_SIZE, no_gpu_line  # noqa: F401 (the plugin's names)
from diagnostics.suite.judge import Measurement
from diagnostics.suite import hub
from diagnostics.suite.gate import Gate
from diagnostics.suite.family_matrix import default_matrix
from diagnostics.suite.matrix import check_threshold_cards
from diagnostics.suite.results import ResultWriter, load_results, load_results_noting, make_record, with_repeats
from diagnostics.suite.search_run import (KNOB_NAMES, SearchBroke, check_search_model, check_search_options, run_search,
                                          search_setting, summary_line)
from diagnostics.units import plural

MANAGER_NAME = "vllm-memcheck-manager"
COMBINATION_FIXTURE = "memcheck_combination"
SEARCH_FIXTURE = "memcheck_search"
MARKERS = {
    "gpu": "starts a real vLLM engine (GPU; vLLM's CPU backend with --card=cpu); skips without a usable GPU",
}
MANAGER_KEY = pytest.StashKey["Manager"]()


def vllm_missing() -> str | None:
    """Why engine starts cannot run here (vLLM not installed), or None. A module function so that a conftest
    standing in for the launcher can stand in for vLLM's presence too."""
    if importlib.util.find_spec("vllm") is None:
        return ("vLLM is not installed; install the version to test (scripts/install.sh gpu VERSION, or cpu) "
                "or run `python -m diagnostics plan` for a prediction")
    return None


def detect_gpu() -> tuple[str | None, str | None]:
    """(name of the GPU the starts will run on, None) through NVML, or (None, why not)."""
    try:
        return gpu_name(), None
    except NoGPU as err:
        return None, err.reason


def pytest_addoption(parser: pytest.Parser) -> None:
    run.add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, args: list) -> None:
    run.reroot(early_config, args)  # `--matrix /elsewhere/m.toml` (space form) moved the rootdir


MEMCHECK_FIXTURES = {"memcheck", COMBINATION_FIXTURE, SEARCH_FIXTURE}
ERROR_KEY = pytest.StashKey[str]()  # a bad option met while collecting, raised once collection ends


def pytest_configure(config: pytest.Config) -> None:
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    try:
        if not config.option.help and asked_for(config):  # else: built when a collected test needs it
            activate(config)
    except UsageError as err:  # a bad option (an empty --model) is one usage line
        raise pytest.UsageError(str(err)) from None


def asked_for(config: pytest.Config) -> bool:
    """Does the session ask for start-up tests before collection (a memcheck option on the command line or in the
    ini file, or `-m` naming gpu)? An installed plugin leaves other sessions alone: no NVML, no run directory."""
    given = any(run.option(config, name) not in (None, False) for name, *_ in run.OPTIONS)
    return given or "gpu" in str(getattr(config.option, "markexpr", "") or "")


def activate(config: pytest.Config) -> Manager:
    """The session's Manager, built and registered on first use. UsageError for a bad option."""
    if MANAGER_KEY not in config.stash:
        manager = config.stash[MANAGER_KEY] = Manager(config)
        config.pluginmanager.register(manager, MANAGER_NAME)
        manager.trap_sigterm()
    return config.stash[MANAGER_KEY]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per matrix combination (ids such as `mml4096-seqs32-util1.0`)."""
    if COMBINATION_FIXTURE in metafunc.fixturenames:
        try:
            matrix = activate(metafunc.config).matrix
        except UsageError as err:
            metafunc.config.stash[ERROR_KEY] = str(err)
            return metafunc.parametrize(COMBINATION_FIXTURE, [])
        metafunc.parametrize(COMBINATION_FIXTURE, matrix.combinations, ids=matrix.ids())


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ERROR_KEY in config.stash:
        raise pytest.UsageError(config.stash[ERROR_KEY])
    if MANAGER_KEY in config.stash or any(MEMCHECK_FIXTURES & set(getattr(i, "fixturenames", ())) for i in items):
        try:
            activate(config).select(config, items)
        except UsageError as err:
            raise pytest.UsageError(str(err)) from None


@pytest.fixture
def memcheck(request: pytest.FixtureRequest) -> Manager:
    """The session's Manager: `memcheck.start(combination, benchmark)`, then `memcheck.verify(measurement)`."""
    return activate(request.config)


@pytest.fixture
def memcheck_search(request: pytest.FixtureRequest):
    """`memcheck_search()` runs --search (suite/search_run.py) and returns search.json's content; the test fails
    with one line when a probe failed for a non-memory reason."""
    manager = activate(request.config)

    def search() -> dict:
        try:
            summary = run_search(manager, manager.search, run.option(manager.config, "search_resolution"),
                                 run.option(manager.config, "search_range"))
        except SearchBroke as err:
            manager._current_measurement = None  # the search's line, not the last start's, is the failure
            pytest.fail(f"--search {manager.search}: {err}", pytrace=False)
        manager.search_lines.append(summary_line(summary, manager.run_dir))
        return summary

    return search


class Manager:
    """All plugin state and every hook but addoption/configure (registered as MANAGER_NAME)."""
    def __init__(self, config: pytest.Config):
        self.config = config
        self.is_worker = hasattr(config, "workerinput")  # set by xdist on its workers only
        self.notices: list[str] = []
        self.cards_file = run.option(config, "cards")
        self.card, self.gpu_name, self.skip_reason = self._card(str(run.option(config, "card") or "auto"))
        self.skip_reason = self.skip_reason or vllm_missing()
        is_cpu = bool(self.card and self.card.is_cpu)
        matrix = run.option(config, "matrix") or (run.CPU_MATRIX if is_cpu else None)
        self.matrix = default_matrix(matrix, run.option(config, "model"))
        check_threshold_cards(self.matrix, self.cards_file)
        self.model = (run.option(config, "model") or self.matrix.model
                      or (run.CPU_DEFAULT_MODEL if is_cpu else run.DEFAULT_MODEL))
        run.check_model(self.model)
        if is_cpu:
            run.check_cpu_model(self.model, run.option(config, "model"))  # --model: no real-size model
        self.load_format = run.load_format_for(self.model, run.option(config, "load_format"))
        self.engine_timeout = run.engine_timeout(run.option(config, "engine_timeout"))
        self.cache_state = run.choice(config, "cache_state", run.CACHE_STATES, "cold")
        self.repeat = run.repeat_count(run.option(config, "repeat"))
        self.worst_case_mode = run.choice(config, "worst_case", run.WORST_CASE_MODES, "auto")
        self.gate = Gate.from_config(config, self.cache_state)
        self.calibration = run.calibration(run.option(config, "calibration"))
        self.resume = bool(run.option(config, "resume"))
        self.search = search_setting(run.option(config, "search"))  # max_dynamic_patch: max_patches, as plan --fit
        check_search_options(self.search, *(run.option(config, f"search_{k}") for k in ("resolution", "range")))
        self.search_lines: list[str] = []
        self.gpus = devices.parse_gpus(run.option(config, "gpus"))
        # absolute: the engine child runs in another working directory
        self.run = run.RunDir.prepare(Path(run.option(config, "report_dir") or "reports").resolve(), self.resume,
                                      self.is_worker, self.model)
        self.notices += [self.run.notice] if self.run.notice else []
        if not self.is_worker and self.skip_reason is None and self._uses_xdist():
            self.run.export()
        self.model_dir = run.ModelDir(self.model)
        self._machine_info: dict | None = None
        if not self.is_worker and self.skip_reason is None:  # a bad directory or baseline: now, not after the sweep
            run.check_writable_dir(self.run.report_dir, "--report-dir")
            self.gate.check(self.machine_info)
        self._model_spec = None
        self.comparison_text: list[str] = []
        self.report_paths: list[Path] = []
        self._current_measurement: Measurement | None = None
        self.warmup: dict | None = None  # the discarded warm-up start of the current combination (--cache-state=warm)
        self._snapshot: str | None = None
        self._trapped = self._header_shown = False
        if self.search in KNOB_NAMES and not self.is_worker:  # a knob the model lacks: one line now
            check_search_model(self.search, self.model_spec(),
                               self.machine_info().get("vllm") if self.skip_reason is None else None,
                               self.matrix.defaults)

    # -- configure-time checks -------------------------------------------------------------------------------
    def _card(self, card_name: str):
        """(card, NVML's GPU name, why gpu tests skip): cpu needs no GPU; NAME and auto are checked against NVML."""
        card_name = card_name.strip().lower()
        if self.cards_file:
            load_cards_toml(self.cards_file)  # a missing or broken --cards file is a usage error for every card
        if card_name == CPU_CARD:
            return get_card(CPU_CARD), None, None
        named = None if card_name == "auto" else get_card(card_name, self.cards_file)
        found, why = detect_gpu()
        if found is None:
            return named, None, no_gpu_line(why, named.name if named else None)
        return self._check_card(named, found), found, None

    def _check_card(self, named, gpu_name: str):
        allow = bool(run.option(self.config, "allow_card_mismatch"))
        card, notices = check_card_against_nvml(named, gpu_name, self.cards_file, allow)
        self.notices += notices
        return card

    def _uses_xdist(self) -> bool:
        return bool(self.config.getoption("numprocesses", None)) or self.config.getoption("dist", "no") != "no"

    @property
    def run_dir(self) -> Path | None:
        return self.run.path

    @property
    def finished(self) -> frozenset:
        return self.run.finished

    # -- lazily built inputs ---------------------------------------------------------------------------------
    def machine_info(self) -> dict:
        if self._machine_info is None:
            self._machine_info = machine_info(self.card)
        return self._machine_info

    def model_spec(self):
        if self._model_spec is None:
            try:
                # the real-size kit has the built-in shapes; any other kit or path: read its config.json
                real_shapes = (self.model == "kit:minicpm-v-2_6" or not self.model.startswith("kit:")
                               or run.stored_vlm(self.model) is not None)
                self._model_spec = get_model(self.model if real_shapes else self.model_dir.path(self.notices))
            except UsageError:
                self._model_spec = False
        return self._model_spec or None

    def model_path(self) -> str:
        """What vLLM gets: a kit built now, a local directory, or a hub id fetched once (then its snapshot)."""
        if self._snapshot is None:
            if not hub.is_hub_id(self.model):
                self._snapshot = self.model_dir.path(self.notices)
            else:
                try:
                    self._snapshot = hub.download_model(self.model, self.load_format, say=self._say)
                except hub.HubUnreachable as err:
                    pytest.exit(f"vllm-memcheck: {err}", returncode=pytest.ExitCode.TESTS_FAILED)
        return self._snapshot

    def _say(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        reporter.write_line(line) if reporter is not None else print(line, flush=True)

    def trap_sigterm(self) -> None:
        """SIGTERM (a CI job cancelled, `timeout`, `kill`) ends the session like Ctrl-C: the engine's process group
        is killed, the report of what finished is written, the kit's temporary directory removed."""
        if self.is_worker or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return

        def interrupt(signum, frame):
            raise KeyboardInterrupt(f"vllm-memcheck: {signal.Signals(signum).name}")

        signal.signal(signal.SIGTERM, interrupt)
        self._trapped = True

    def sends_image(self, settings: dict) -> bool | None:
        """A vision-language model's request carries an image unless the settings allow none."""
        model = self.model_spec()
        if model is None:
            return None
        limit = (settings.get("limit_mm_per_prompt") or {}).get("image")
        return model.vision is not None and (limit is None or limit > 0)

    def image_prompt(self) -> str | None:
        """The family's one-image prompt (its kit data); None for a text model: the launcher's default."""
        model = self.model_spec()
        return model.family.kit.prompt if model is not None and model.family is not None else None

    def engine_env(self) -> dict:
        """The torchvision stub visible to transformers when the family's kit re-exports its processors (kit/cpu_shim)."""
        model = self.model_spec()
        stub = model is not None and model.family is not None and model.family.kit.torchvision_stub
        return {"VLLM_MEMCHECK_TORCHVISION_STUB": "visible"} if stub else {}

    def settings_for(self, combination) -> dict:
        return {**self.matrix.defaults, **combination.settings}

    def startable(self, settings: dict) -> dict:
        """The settings as this card and the installed vLLM can start them: bfloat16 -> float16 below compute
        capability 8.0 (a notice); a setting the version lacks, or a card it cannot run, skips the combination
        with one line saying why, before the start (never a TypeError inside vLLM)."""
        settings, note = dtype_for_card(settings, self.card)
        if note and note not in self.notices:
            self.notices.append(note)
        try:
            why = start_refusal(settings, self.machine_info().get("vllm") or "", self.card, self.model)
        except UsageError:  # no vLLM installed, or a version the tables do not cover: vLLM itself will say
            why = None
        if why:
            pytest.skip(f"vllm-memcheck: refused before the start: {why}")
        return settings

    def devices_for(self, settings: dict) -> tuple | None:
        """The GPUs this worker's start claims (engine/gpus.py): with --gpus or under xdist, the worker's own
        GPU and the next tensor_parallel_size x pipeline_parallel_size - 1; None (the visible device, the
        machine-wide lock) otherwise."""
        if self.card is None or self.card.is_cpu or not (self.gpus or self._uses_xdist() or self.is_worker):
            return None
        gpus = self.gpus
        if gpus is None:
            found, _, why = list_gpus()
            if not found:
                raise NoGPU(why or "NVML sees no GPU")
            gpus = [g["index"] for g in found]
        worker = devices.worker_index(self.config.workerinput["workerid"] if self.is_worker else None)
        try:
            return devices.pick_devices(worker, gpus, int(settings.get("tensor_parallel_size") or 1)
                                        * int(settings.get("pipeline_parallel_size") or 1))
        except UsageError as err:
            pytest.fail(str(err), pytrace=False)

    # -- one start -------------------------------------------------------------------------------------------
    def start(self, combination, benchmark=None) -> Measurement:
        """Start the engine --repeat times for `combination` (after a warm-up start with --cache-state=warm), record
        one result with the spread of its figures, and judge it (see verify): the first failed start decides."""
        if combination.id in self.run.failed:  # --resume skips nothing that failed: it fails again, unstarted
            record = self.run.failed[combination.id]
            pytest.fail(f"{combination.id}: recorded as failed in {self.run_dir / 'results.jsonl'} (--resume): "
                        + "; ".join(record.get("reasons") or [str(record.get("outcome"))]), pytrace=False)
        run_dir = self.run.ensure()
        settings = self.startable(self.settings_for(combination))
        model_path = self.model_path()
        case = starts.worst_case_for(self, combination, settings)

        def spec_for(suffix: str, env: dict, warm_up: bool = False) -> launch.StartSpec:
            name = combination.id if not suffix else f"{combination.id}.{suffix}"
            return starts.start_spec(self, combination, settings, model_path, case, name, env, warm_up)

        measurements = []
        with starts.caches(self, combination, spec_for) as cache_env:
            for k in range(self.repeat):
                spec = spec_for("" if k == 0 else f"r{k + 1}", cache_env(k))
                measurements.append(starts.start_once(self, combination, settings, spec, benchmark if k == 0 else None))
        chosen = next((m for m in measurements if m.status == "failed"), measurements[-1])
        record = with_repeats(chosen.record, [m.record for m in measurements]) if self.repeat > 1 else chosen.record
        if self.warmup is not None:
            record["warmup"] = self.warmup
        measurement = Measurement(combination, record, chosen.verdict)
        ResultWriter(run_dir).append(measurement.record)
        self._current_measurement = measurement  # picked up by pytest_runtest_makereport of this call
        return measurement

    def judge(self, combination, settings: dict, result, started_at: str) -> Measurement:
        """The verdict (suite/judge.py) and the results.jsonl record (suite/results.py) of one start."""
        log = result.log  # the launcher read the start's log once
        # the log echoes only some settings (the CPU backend hardly any); the explainer needs the ones we set
        log.settings.update({k: v for k, v in settings.items() if k not in log.settings})
        verdicts.settle_request_outcome(result, log)  # a request that ran out of memory: oom_request
        try:
            explanation = explain_record(log, model=self.model_spec(), card=self.card, coefficients=self.calibration)
        except UsageError:
            explanation = None
        vllm_version = self.machine_info().get("vllm")
        expectation = verdicts.expect(combination, self.card, self.model_spec(), vllm_version, settings,
                                      self.calibration)
        prediction = verdicts.predict_start(self.model_spec(), self.card, vllm_version, settings, self.calibration)
        limits = verdicts.limits_for(combination.thresholds, self.card, settings, verdicts.profile_peak_of(result),
                                     self.model_spec(), vllm_version)
        verdict = verdicts.judge(combination.id, self.card, result, log, expectation, limits, explanation,
                                 self.engine_timeout)
        record = make_record(self._start_fields(combination, settings, started_at), verdict, result, log,
                             self.run_dir, prediction)
        return Measurement(combination, record, verdict)

    def _start_fields(self, combination, settings: dict, started_at: str) -> dict:
        """The record's fields that name the start: what ran, where, on which card."""
        card = self.card
        return {"id": combination.id, "scenario": combination.scenario, "model": self.model,
                "model_path": self.model_path(), "load_format": self.load_format,
                "settings": settings,
                "card": {"name": card.name, "total_gib": self.machine_info().get("gpu_total_gib", card.total_gib),
                         "profile_threshold_gib": card.profile_threshold_gib, "headroom_gib": card.headroom_gib},
                "machine_info": self.machine_info(), "cache_state": self.cache_state, "started_at": started_at}

    def verify(self, measurement: Measurement) -> None:
        """Turn a measurement into the test's verdict: fail with the diagnosis, xfail, or pass."""
        if measurement.status == "failed":
            pytest.fail(measurement.diagnosis, pytrace=False)
        if measurement.status == "xfail":
            pytest.xfail(measurement.diagnosis)

    # -- hooks -----------------------------------------------------------------------------------------------
    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        self._header_shown = True
        return self.header_lines()

    def header_lines(self) -> list[str]:
        card = self.card.name if self.card else "auto"
        lines = [f"vllm-memcheck: card {card}, model {self.model} (load_format {self.load_format}), "
                 f"matrix {self.matrix.path} ({len(self.matrix.combinations)} combinations)"]
        if self.skip_reason:
            lines.append(f"vllm-memcheck: gpu tests skip: {self.skip_reason}")
        if self.engine_timeout is None:
            lines.append("vllm-memcheck: no engine timeout (--engine-timeout=0): a start that hangs waits forever")
        if self.resume and self.run_dir:
            lines.append(f"vllm-memcheck: resuming {self.run_dir} ({len(self.finished)} finished)")
        return lines + [f"vllm-memcheck: {n}" for n in self.notices]

    def select(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """The tests this session runs: the search test or the matrix; gpu tests skipped with one line without a
        usable GPU, or when --resume already recorded them; the header's lines now if built after the header."""
        for line in [] if self._header_shown else self.header_lines():
            self._say(line)
        # --search runs the search test instead of the matrix; without it the search test is not collected
        drop = COMBINATION_FIXTURE if self.search else SEARCH_FIXTURE
        kept = [i for i in items if drop not in getattr(i, "fixturenames", ())]
        if len(kept) < len(items):
            config.hook.pytest_deselected(items=[i for i in items if i not in kept])
            items[:] = kept
        for item in items:
            if item.get_closest_marker("gpu") is None:
                continue
            if self.skip_reason:
                item.add_marker(pytest.mark.skip(reason=self.skip_reason))
                continue
            callspec = getattr(item, "callspec", None)  # only parametrized items have one
            combination = callspec.params.get(COMBINATION_FIXTURE) if callspec else None
            if combination is not None and combination.id in self.finished and combination.id not in self.run.failed:
                item.add_marker(pytest.mark.skip(
                    reason=f"already recorded in {self.run_dir / 'results.jsonl'} (--resume)"))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        if call.when == "call" and self._current_measurement is not None:
            measurement, self._current_measurement = self._current_measurement, None
            report.sections.append(("vllm-memcheck", measurement.numbers))
            if report.failed:
                report.longrepr = measurement.diagnosis
        return report

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker or self.run_dir is None or not (self.run_dir / "results.jsonl").is_file():
            return
        results, notes = load_results_noting(self.run_dir)
        if not results:
            return
        self.report_paths = list(write_reports(self.run_dir))
        if not self.gate.compare_name:  # with a comparison they are among its warnings
            self.comparison_text += [f"warning: {note}" for note in notes]
        if (self.gate.save_name or self.gate.compare_name) and self.gate.finish(results, notes):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        self.comparison_text += self.gate.lines

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.is_worker:
            return
        results = load_results(self.run_dir) if self.run_dir is not None else []
        if not results:
            if self.gate.save_name or self.gate.compare_name:
                terminalreporter.write_line("vllm-memcheck: no start-up results in this session; no baseline "
                                            "saved or compared")
            return
        terminalreporter.write_sep("=", f"vllm-memcheck: {plural(len(results), 'combination')} in {self.run_dir}")
        terminalreporter.write_line(summary_table(results))
        spreads = spread_table(results)
        if spreads:
            terminalreporter.write_line(f"spread over --repeat starts (the gate compares medians):\n{spreads}")
        terminalreporter.write_line(accuracy_table(results))
        for path in self.report_paths:
            terminalreporter.write_line(f"report: {path}")
        for line in self.comparison_text + self.search_lines:
            terminalreporter.write_line(line)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.run.restore_env()
        self.model_dir.cleanup()
        if self._trapped:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
