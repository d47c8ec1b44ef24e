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
    with pytest.raises(UsageError, match="unknown --load-format value 'pt'; accepted: auto, dummy"):
        run.load_format_for("m", "pt")
    assert run.engine_timeout(None) == run.DEFAULT_ENGINE_TIMEOUT_S and run.engine_timeout("120") == 120.0
    assert run.engine_timeout("0") is None and run.engine_timeout(0.0) is None  # issue #9: 0 is no limit, not 900
    for bad in ("soon", "-5", "nan", "inf"):
        with pytest.raises(UsageError, match=f"bad engine_timeout '{bad}'; accepted: a number of seconds >= 1 .an engine start takes longer., or 0"):
            run.engine_timeout(bad)


def test_every_option_has_an_ini_twin_and_help():
    names = [name for name, _, _, _ in run.OPTIONS]
    assert len(names) == len(set(names)) == 23  # 15 + gpus, search, search_resolution, search_range (issue #14)
    # + worst_case, cache_state, repeat, allow_cache_mismatch (issue 25)
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


def test_a_stored_vlm_name_picks_the_vlm_matrix_and_its_hub_repository():
    from diagnostics.suite.matrix import load_matrix

    assert run.stored_vlm("kit:Qwen2.5-VL-7B") == "qwen2.5-vl-7b" and run.stored_vlm("openbmb/x") is None
    assert run.matrix_path(None, "qwen2.5-vl-7b") == run.SHIPPED_VLM_MATRIX
    assert run.matrix_path("m.toml", "qwen2.5-vl-7b") == "m.toml"
    assert run.matrix_path(None, "openbmb/MiniCPM-V-2_6") != run.SHIPPED_VLM_MATRIX
    assert len(load_matrix(run.SHIPPED_VLM_MATRIX).combinations) == 18 + 2
    assert run.ModelDir("qwen2.5-vl-7b").path([]) == "Qwen/Qwen2.5-VL-7B-Instruct"


def test_vlm_kits_are_accepted_built_and_load_dummy_weights(tmp_path):
    run.check_model("kit:gemma-3-4b")
    with pytest.raises(UsageError, match="kit:qwen2.5-vl-7b"):
        run.check_model("kit:qwen9-vl")
    assert run.load_format_for("kit:gemma-3-4b", None) == "dummy"
    assert run.load_format_for("qwen2.5-vl-7b", None) == "auto"
    model_dir = run.ModelDir("kit:gemma-3-4b")
    notices: list[str] = []
    built = model_dir.path(notices)
    try:
        assert os.path.isfile(os.path.join(built, "tokenizer.json"))
        assert notices and "kit:gemma-3-4b" in notices[0]
    finally:
        model_dir.cleanup()


def test_minicpm_v_4_5_kits_are_accepted_and_built_as_4_5_with_its_family_matrix(tmp_path):
    import json

    from diagnostics.suite.family_matrix import default_matrix

    for name in ("kit:minicpm-v-4_5", "kit:minicpm-v-4_5-tiny"):
        run.check_model(name)
        assert run.load_format_for(name, None) == "dummy"  # no weights written
    assert default_matrix(None, "kit:minicpm-v-4_5").name == "vlm-minicpm-v-4_5"
    model_dir = run.ModelDir("kit:minicpm-v-4_5-tiny")
    try:
        with open(os.path.join(model_dir.path([]), "config.json")) as f:
            config = json.load(f)
        assert config["version"] == 4.5 and config["hidden_size"] == 128
    finally:
        model_dir.cleanup()


def test_calibration_option_none_shipped_file_and_bad_file(tmp_path):
    assert run.calibration(None) is None  # the built-in coefficients
    shipped = run.calibration("shipped")
    assert shipped.coefficients.name == "field-cases" and shipped.inputs
    own = tmp_path / "c.toml"
    own.write_text('[calibration]\nname = "mine"\n[coefficients]\nllm_activation_scale = 1.5\n')
    assert run.calibration(str(own)).coefficients.llm_activation_scale == 1.5
    with pytest.raises(UsageError, match="cannot read it"):
        run.calibration(str(tmp_path / "missing.toml"))


def test_repeat_count_and_cache_env(tmp_path):                                            # issue 25
    assert (run.repeat_count(None), run.repeat_count("3")) == (1, 3)
    for bad in ("0", "-1", "two", "21", "1.5"):
        with pytest.raises(UsageError, match=f"bad repeat '{bad}'; accepted: a whole number of starts from 1 to 20"):
            run.repeat_count(bad)
    env = run.cache_env(tmp_path / "c")
    assert env == {"VLLM_CACHE_ROOT": str(tmp_path / "c" / "vllm"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "c" / "inductor"),
                   "TRITON_CACHE_DIR": str(tmp_path / "c" / "triton")}
    assert set(env) == set(run.CACHE_ENV)


def test_a_miscased_kit_and_a_timeout_no_start_can_meet_are_refused_before_the_first_start():  # newcomer-3 #268, #274
    from diagnostics.errors import UsageError
    from diagnostics.suite import run as suite_run

    with pytest.raises(UsageError, match="unknown model kit 'KIT:tiny-text'"):
        suite_run.check_model("KIT:tiny-text")
    with pytest.raises(UsageError, match=r"bad engine_timeout '1e-9'; accepted: a number of seconds >= 1"):
        suite_run.engine_timeout("1e-9")
    assert suite_run.engine_timeout("0") is None and suite_run.engine_timeout("30") == 30.0


def test_a_model_path_that_is_a_file_is_named_so(tmp_path):                                   # newcomer-3 #272
    from diagnostics.errors import UsageError
    from diagnostics.suite import run as suite_run

    (tmp_path / "m.toml").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a model directory"):
        suite_run.check_model_path(str(tmp_path / "m.toml"))


def test_resume_refuses_a_run_with_an_id_twice_or_of_another_model(tmp_path):                # newcomer-3 #309, #310
    import json as _json

    from diagnostics.errors import UsageError
    from diagnostics.suite import run as suite_run

    run_dir = tmp_path / "r1"
    run_dir.mkdir()
    (tmp_path / "latest").write_text("r1\n")
    ok = {"schema_version": 1, "id": "a", "outcome": "ok", "status": "passed", "passed": True, "model": "kit:tiny-text"}
    (run_dir / "results.jsonl").write_text(_json.dumps(ok) + "\n" + _json.dumps({**ok, "outcome": "oom_profile"}) + "\n")
    with pytest.raises(UsageError, match="has more than one record for a"):
        suite_run.RunDir.prepare(tmp_path, resume=True, is_worker=False, model="kit:tiny-text")
    (run_dir / "results.jsonl").write_text(_json.dumps({**ok, "model": "other"}) + "\n")
    with pytest.raises(UsageError, match="the latest run .r1. is of other, not kit:tiny-text"):
        suite_run.RunDir.prepare(tmp_path, resume=True, is_worker=False, model="kit:tiny-text")
    assert suite_run.RunDir.prepare(tmp_path, resume=True, is_worker=False, model="other").finished == {"a"}


@pytest.mark.parametrize("name", ["openbmb/MiniCPM-V-2_6", "minicpm-v-2_6", "MiniCPM-V-2.6", "kit:minicpm-v-2_6"])
def test_cpu_card_refuses_the_16_gb_model_by_any_of_its_names(name):                      # newcomer pass B8
    with pytest.raises(UsageError, match="--card=cpu cannot start"):
        run.check_cpu_model(name)


@pytest.mark.parametrize("name", ["kit:tiny-text", "kit:minicpm-v-2_6-tiny", "kit:minicpm-v-4_5-tiny"])
def test_cpu_card_takes_the_tiny_kits(name):
    run.check_cpu_model(name)
    run.check_cpu_model(name, name)  # named with --model too


@pytest.mark.parametrize("name", ["qwen2.5-vl-7b", "kit:qwen2.5-vl-7b", "Qwen/Qwen2.5-VL-7B-Instruct",
                                  "kimi-vl-a3b-instruct", "kit:minicpm-v-4_5"])
def test_cpu_card_refuses_a_real_size_model_the_user_names(name):                         # newcomer pass
    with pytest.raises(UsageError, match=r"--card=cpu cannot start .* \(a real-size model of [0-9.]+ billion "
                                         r"parameters\).*kit:tiny-text"):
        run.check_cpu_model(name, name)
    run.check_cpu_model(name)  # a matrix's own model (no --model): only the 16 GB list applies
