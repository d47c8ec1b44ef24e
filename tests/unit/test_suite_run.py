"""suite/run.py: the options' checks, the run directory (--resume, xdist hand-over) and the model directory."""

from __future__ import annotations

import os

import pytest

from diagnostics.errors import UsageError
from diagnostics.suite import run
from diagnostics.suite.results import ResultWriter, new_run_dir


def test_model_load_format_and_timeout_checks():
    with pytest.raises(UsageError, match="unknown model kit 'kit:nope'; accepted: kit:minicpm-v-2_6"):
        run.check_model("kit:nope")
    run.check_model("openbmb/MiniCPM-V-2_6")  # a hub id is left to vLLM
    assert run.load_format_for("kit:minicpm-v-2_6-tiny", "auto") == "dummy"  # the kit has no weights
    assert run.load_format_for("kit:tiny-text", None) == "auto"
    with pytest.raises(UsageError, match="bad load_format 'pt'; accepted: auto, dummy"):
        run.load_format_for("m", "pt")
    assert run.engine_timeout(None) == run.DEFAULT_ENGINE_TIMEOUT_S and run.engine_timeout("120") == 120.0
    with pytest.raises(UsageError, match="accepted: a positive number of seconds"):
        run.engine_timeout("0")
    with pytest.raises(UsageError, match="bad engine_timeout 'soon'; accepted: a number of seconds"):
        run.engine_timeout("soon")


def test_every_option_has_an_ini_twin_and_help():
    names = [name for name, _, _, _ in run.OPTIONS]
    assert len(names) == len(set(names)) == 13
    assert all(ini in ("string", "bool") and text for _, _, ini, text in run.OPTIONS)


def test_run_dir_resume_and_the_xdist_hand_over(tmp_path, monkeypatch):
    monkeypatch.delenv(run.RUN_DIR_ENV, raising=False)
    fresh = run.RunDir.prepare(tmp_path, resume=True, is_worker=False)
    assert fresh.path is None and fresh.notice == f"--resume: no earlier run under {tmp_path}/; starting a new one"
    earlier = new_run_dir(tmp_path)
    ResultWriter(earlier).append({"id": "a"})
    resumed = run.RunDir.prepare(tmp_path, resume=True, is_worker=False)
    assert resumed.path == earlier and resumed.finished == {"a"}
    controller = run.RunDir.prepare(tmp_path, resume=False, is_worker=False)
    controller.export()
    assert controller.path is not None and os.environ[run.RUN_DIR_ENV] == str(controller.path)
    worker = run.RunDir.prepare(tmp_path, resume=False, is_worker=True)
    assert worker.path == controller.path
    controller.restore_env()
    assert run.RUN_DIR_ENV not in os.environ


def test_model_dir_of_a_hub_id_and_a_local_path(tmp_path):
    notices: list[str] = []
    assert run.ModelDir("openbmb/MiniCPM-V-2_6").path(notices) == "openbmb/MiniCPM-V-2_6"
    assert run.ModelDir(str(tmp_path)).path(notices) == str(tmp_path.resolve())
    assert notices == []
