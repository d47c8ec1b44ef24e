"""`python -m diagnostics plan`: table, --json shape, defaults, and one-line errors with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from diagnostics.cli import main
from diagnostics.versions import default_version


def _json(capsys, *argv):
    assert main(["plan", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_seed_defaults_fail_and_name_the_causes(capsys):
    doc = _json(capsys, "--card", "3090", "--vllm", "0.6.3")
    assert doc["verdict"] == "oom_profile" and doc["engine"] == "V0" and doc["vllm_version"] == "0.6.3"
    assert doc["profile"] == {"encoder_items": 256, "encoder_slices": 256, "vit_tokens": 262_144,
                              "max_num_batched_tokens": 32768}
    assert doc["settings"]["max_num_seqs"] == 256 and doc["settings"]["max_model_len"] == 32768
    named = {c["setting"] for c in doc["culprits"]}
    assert named & {"max_num_seqs", "max_model_len"}  # from diagnostics.explainer
    assert doc["fix"]


def test_seed_fix_fits(capsys):
    doc = _json(capsys, "--card", "3090", "--vllm", "0.6.3", "--set", "max_model_len=4096", "--set", "max_num_seqs=32",
                "--set", "gpu_memory_utilization=1")
    assert doc["verdict"] == "ok" and doc["kv_cache_tokens"] > 4096 and doc["culprits"] == []
    assert doc["components"]["weights_gib"] == 15.09


def test_json_values_from_set(capsys):
    doc = _json(capsys, "--card", "l4", "--vllm", "0.32.0", "--set", 'limit_mm_per_prompt={"image":1,"video":0}',
                "--set", "enforce_eager=true", "--set", "max_model_len=4096", "--set", "max_num_seqs=2")
    assert doc["settings"]["limit_mm_per_prompt"] == {"image": 1, "video": 0}
    assert doc["settings"]["enforce_eager"] is True and doc["components"]["cuda_graph_gib"] == 0
    assert doc["verdict"] == "ok"


def test_bare_plan_uses_defaults(capsys):
    doc = _json(capsys)
    assert doc["card"]["name"] == "3090" and doc["vllm_version"] == default_version()


def test_text_table(capsys):
    assert main(["plan", "--card", "3090", "--vllm", "0.6.3"]) == 0
    out = capsys.readouterr().out
    for word in ("weights", "non_torch", "encoder_profile", "activation_peak", "kv_cache", "cuda_graph",
                 "verdict: oom_profile", "256 dummy image items", "262,144 ViT tokens", "15.09"):
        assert word in out


def test_text_table_prints_gib_as_units_formats_them_and_labels_honestly(capsys):   # newcomer pass (nD)
    """tabulate re-read the formatted GiB cells as numbers (`9.31323e+07`, `0.3`); a user's kv_cache_memory_bytes is
    `derived` (taken as given), and a text model's encoder row says there is no encoder pass, not `exact: none`."""
    text_model = str(Path(__file__).resolve().parents[1] / "data" / "models" / "qwen3-8b")
    assert main(["plan", "--model", text_model, "--card", "h100-80", "--vllm", "0.32.0", "--no-vllm-exact",
                 "--set", "kv_cache_memory_bytes=99999999999999999"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()[:1] in (["kv_cache"], ["non_torch"],
                                                                                        ["encoder_profile"])}
    assert "e+" not in rows["kv_cache"] and "93132257.46" in rows["kv_cache"]
    assert "derived: kv_cache_memory_bytes (your setting, as vLLM takes it)" in rows["kv_cache"]
    assert rows["non_torch"].split()[1] == "0.30"
    assert "derived: no encoder pass" in rows["encoder_profile"] and "exact" not in rows["encoder_profile"]


def test_entrypoint_changes_v1_defaults(capsys):
    llm = _json(capsys, "--card", "3090", "--vllm", "0.33.0", "--entrypoint", "llm")
    serve = _json(capsys, "--card", "3090", "--vllm", "0.33.0", "--entrypoint", "serve")
    assert llm["profile"]["max_num_batched_tokens"] == 8192 and serve["profile"]["max_num_batched_tokens"] == 2048
    assert llm["profile"]["encoder_items"] == 8 and serve["profile"]["encoder_items"] == 2


def test_cards_file(tmp_path, capsys):
    f = tmp_path / "cards.toml"
    f.write_text("[cards.mi-big]\ntotal_gib = 120.0\n")
    doc = _json(capsys, "--card", "mi-big", "--cards", str(f), "--vllm", "0.6.3")
    assert doc["card"] == {"name": "mi-big", "total_gib": 120.0} and doc["verdict"] == "ok"


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--card", "rtx9999"], "unknown card 'rtx9999'; accepted:"),
        (["--model", "bogus-model"], "unknown model 'bogus-model'; accepted:"),
        (["--set", "max_num_seq=4"], "unknown setting 'max_num_seq'; accepted:"),
        (["--vllm", "0.3.3"], "unsupported vLLM version '0.3.3'; accepted:"),
        (["--entrypoint", "grpc"], "unknown entrypoint 'grpc'; accepted:"),
    ],
)
def test_bad_input_one_line_exit_2(argv, fragment, capsys):
    assert main(["plan", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vllm-memcheck plan: error: ") and fragment in err and "\n" not in err


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "diagnostics", "plan", "--card", "l20", "--vllm", "0.5.4", "--json"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["verdict"] == "oom_profile"


def test_format_md_is_the_report_with_the_same_verdict_as_json(capsys, tmp_path):
    doc = _json(capsys, "--card", "3090", "--vllm", "0.6.3")
    out = tmp_path / "plan.md"
    assert main(["plan", "--card", "3090", "--vllm", "0.6.3", "--format", "md", "--out", str(out)]) == 0
    assert capsys.readouterr().out == ""
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# vLLM start-up memory prediction: openbmb/MiniCPM-V-2_6 on 3090\n")
    assert f"fails with {doc['verdict']}" in text and "| weights (GiB)" in text and "| plan predicts" in text
    fix = ", ".join(f"{k}={v}" for k, v in doc["fix"].items())
    assert f"Fix: set {fix}; plan predicts it" in text
    assert f"{doc['components']['weights_gib']:.2f}" in text
    assert len(text) <= 65_536


def test_format_md_of_a_start_that_fits_has_no_fix(capsys):
    assert main(["plan", "--card", "a100-80", "--vllm", "0.6.3", "--set", "max_model_len=4096", "--format",
                 "md"]) == 0
    text = capsys.readouterr().out
    assert "starts: peak" in text and "## What to change" not in text and "Fix:" not in text


def test_json_and_format_text_disagree_exit_2(capsys):
    assert main(["plan", "--json", "--format", "text"]) == 2
    assert "--json and --format text disagree" in capsys.readouterr().err


def test_format_md_on_the_cpu_pseudo_card_says_plan_cannot_tell(capsys):
    assert main(["plan", "--card", "cpu", "--format", "md"]) == 0
    text = capsys.readouterr().out
    assert "plan cannot tell whether" in text and "total read at run time" in text
    assert "0.00 GiB)" not in text and "the log" not in text
# -- issue #9 (through the command line, in a subprocess: exit codes and one-line errors) -------------------------
I9_ROOT = Path(__file__).resolve().parents[2]


def i9_cli(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diagnostics", *map(str, args)], capture_output=True, cwd=I9_ROOT,
                          input=stdin, timeout=120)


def usage_line(proc) -> str:
    """The one stderr line of a usage error (exit 2), and nothing else."""
    err = proc.stderr.decode()
    assert proc.returncode == 2, (proc.returncode, err, proc.stdout.decode())
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


PLANNED = ("max_model_len", "max_num_seqs", "max_num_batched_tokens", "gpu_memory_utilization",
           "limit_mm_per_prompt", "enforce_eager", "kv_cache_memory_bytes")
OOM_LOG = I9_ROOT / "tests" / "data" / "logs" / "gpu_v063_profile_vision_oom.log"


def plan_json(card: str, vllm: str, settings: dict) -> dict:
    sets = [x for k, v in settings.items() for x in ("--set", f"{k}={json.dumps(v)}")]
    proc = i9_cli("plan", "--card", card, "--vllm", vllm, "--json", *sets)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


# -- every fix that explain or plan offers must start ---------------------------------------------------------------
def assert_fixes_start(card: str, vllm: str, base: dict, offered: dict) -> None:
    # a culprit that fixes it alone (its why says "enough" / "which fits") and the combined fix must both start
    offers = [({c["setting"]: c["suggested"]}, f"culprit {c['setting']}") for c in offered["culprits"]
              if c.get("suggested") is not None and c.get("fixes_alone")]
    if offered.get("fix"):
        offers.append((dict(offered["fix"]), "fix"))
    assert offers, offered
    for change, what in offers:
        replanned = plan_json(card, vllm, {**base, **change})
        assert replanned["verdict"] == "ok", (what, change, replanned["verdict"], replanned.get("culprits"))


def test_every_fix_explain_offers_for_the_v063_vision_oom_log_starts():
    proc = i9_cli("explain", OOM_LOG, "--json", "--card", "3090")
    assert proc.returncode == 0, proc.stderr.decode()
    answer = json.loads(proc.stdout)
    base = {k: v for k, v in answer["settings"].items() if k in PLANNED}
    assert base["max_model_len"] == 32768
    assert_fixes_start("3090", "0.6.3", base, answer)


@pytest.mark.parametrize("card, vllm, settings", [
    ("3090", "0.6.3", {}),
    ("3090", "0.6.3", {"max_model_len": 32768, "max_num_seqs": 128}),
    ("3090", "0.6.3", {"max_model_len": 8192}),
    ("l4", "0.10.1", {}),
    ("4090", "0.7.3", {"max_num_seqs": 128}),
])
def test_every_fix_plan_offers_starts(card, vllm, settings):
    planned = plan_json(card, vllm, settings)
    if planned["verdict"] == "ok":
        assert not planned["fix"]
        return
    assert_fixes_start(card, vllm, settings, planned)


# -- plan refuses what vLLM refuses, in vLLM's words ------------------------------------------------------------------
def test_plan_refuses_fewer_batched_tokens_than_sequences():
    line = usage_line(i9_cli("plan", "--vllm", "0.6.3", "--set", "max_num_batched_tokens=16", "--set",
                          "max_num_seqs=32", "--set", "max_model_len=16"))
    assert "max_num_batched_tokens (16) must be greater than or equal to max_num_seqs (32)" in line


def test_plan_refuses_fewer_batched_tokens_than_max_model_len_without_chunked_prefill():
    line = usage_line(i9_cli("plan", "--vllm", "0.6.3", "--set", "max_num_batched_tokens=2048", "--set",
                          "max_model_len=4096", "--set", "max_num_seqs=8"))
    assert "max_num_batched_tokens (2048) is smaller than max_model_len (4096)" in line
    # with chunked prefill vLLM accepts it
    proc = i9_cli("plan", "--vllm", "0.6.3", "--set", "max_num_batched_tokens=2048", "--set", "max_model_len=4096",
               "--set", "max_num_seqs=8", "--set", "enable_chunked_prefill=true")
    assert proc.returncode == 0, proc.stderr.decode()


def test_plan_refuses_a_max_model_len_above_what_the_model_allows():
    line = usage_line(i9_cli("plan", "--set", "max_model_len=1000000"))
    assert "max_model_len (1000000) is greater than the derived max_model_len" in line


def test_plan_card_cpu_refuses_in_one_line():
    line = usage_line(i9_cli("plan", "--card", "cpu"))
    assert "cpu" in line and "--card=cpu" in line
# -- --fit, --card all / lists, --vllm all / lists (issue #14) ------------------------------------------------------

def test_fit_max_model_len_json(capsys):
    doc = _json(capsys, "--card", "3090", "--vllm", "0.32.0", "--set", "max_num_seqs=32", "--fit", "max_model_len")
    assert doc["setting"] == "max_model_len" and doc["value"] % 16 == 0
    assert doc["at"]["verdict"] == "ok" and doc["at"]["settings"]["max_model_len"] == doc["value"]
    assert doc["above_value"] == doc["value"] + 16 and doc["above"]["verdict"] != "ok"
    assert set(doc["at"]["components"]) >= {"weights_gib", "kv_cache_gib", "activation_peak_gib"}


def test_fit_text_names_the_answer_and_what_fails_above(capsys):
    assert main(["plan", "--card", "3090", "--vllm", "0.32.0", "--set", "max_num_seqs=32",
                 "--fit", "max_model_len"]) == 0
    out = capsys.readouterr().out
    assert "largest max_model_len that fits: 8,416 (a multiple of the block size 16)" in out
    assert "just above: max_model_len=8,432 -> kv_too_small (phase: kv_cache)" in out
    assert "weights" in out and "verdict: ok" in out


def test_frontier_text_and_json(capsys):
    assert main(["plan", "--card", "3090", "--vllm", "0.6.3", "--fit", "max_model_len,max_num_seqs"]) == 0
    out = capsys.readouterr().out
    assert "largest max_model_len per max_num_seqs" in out and "one step above" in out
    doc = _json(capsys, "--card", "3090", "--vllm", "0.6.3", "--fit", "max_model_len,max_num_seqs")
    assert [r["max_num_seqs"] for r in doc["rows"]] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    assert all(r["at"]["verdict"] == "ok" for r in doc["rows"])


def test_card_all_one_row_per_card(capsys):
    doc = _json(capsys, "--card", "all", "--vllm", "0.32.0", "--set", "max_model_len=8192", "--set", "max_num_seqs=16")
    rows = {r["card"]: r for r in doc["rows"]}
    # every built-in GPU card: 19 since main added one (issue #16 cards)
    assert len(rows) == 19 and rows["h200"]["verdict"] == "ok" and rows["t4"]["verdict"] == "oom_weights"
    assert main(["plan", "--card", "3090,4090,l40s", "--vllm", "0.32.0", "--set", "max_model_len=8192"]) == 0
    out = capsys.readouterr().out
    assert "max concurrency" in out and out.count("0.32.0") == 3


def test_vllm_list_with_fit(capsys):
    # a6000: with main's estimator (issues #12/#13) 0.8.4's profile run leaves a 4090 no KV cache at 16 sequences
    doc = _json(capsys, "--card", "a6000", "--vllm", "0.6.3,0.8.4,0.32.0", "--fit", "max_model_len",
                "--set", "max_num_seqs=16")
    assert [r["vllm_version"] for r in doc["rows"]] == ["0.6.3", "0.8.4", "0.32.0"]
    assert all(r["fit"] == "max_model_len" and r["value"] for r in doc["rows"])


@pytest.mark.parametrize("argv, fragment", [
    (["--fit", "bogus"], "unknown --fit setting 'bogus'; accepted:"),
    (["--fit", "a,b,c"], "names 3 settings"),
    (["--card", "all", "--fit", "max_model_len,max_num_seqs"], "a --fit frontier is for one card"),
    (["--vllm", "0.6.3,9.9.9"], "9.9.9"),
    (["--fit", "max_model_len", "--set", "max_model_len=4096"], "together"),
])
def test_fit_and_list_errors_one_line_exit_2(argv, fragment, capsys):
    assert main(["plan", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and "\n" not in err and err.startswith("vllm-memcheck plan: error:")


@pytest.mark.parametrize("argv, words", [                                                   # newcomer-3 defects 1, 3
    (["--fit", "max_model_len", "--calibration", "nope.toml"], "calibration file nope.toml: cannot read it"),
    (["--card", "all", "--calibration", "nope.toml"], "calibration file nope.toml"),
    (["--card", "3090,4090", "--format", "md"], "--format md is the report of one prediction"),
    (["--fit", "max_model_len,max_num_seqs", "--format", "md"], "--format md is the report of one prediction"),
    (["--fit", "max_model_len,max_num_seqs", "--calibration", "shipped"], "--calibration with a --fit frontier"),
    (["--fit", ","], "--fit ',' names no setting"),
    (["--fit", ""], "--fit '' names no setting"),
    (["--card", "cpu,3090"], "plan --card cpu: the estimator predicts GPU start-ups"),
    (["--card", "all", "--set", "max_model_len=1000000"], "greater than the derived max_model_len"),
    (["--vllm", "0.6.3,0.7.3", "--calibration", "shipped"], "--calibration with a release changelog"),
])
def test_fit_and_tables_refuse_in_one_line_what_plain_plan_refuses(capsys, argv, words):
    assert main(["plan", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1


def test_fit_and_tables_honour_out_and_format_md(tmp_path, capsys):                       # newcomer-3 defect 3
    fit_out, fleet_out = tmp_path / "fit.txt", tmp_path / "fleet.txt"
    assert main(["plan", "--fit", "max_model_len", "--out", str(fit_out)]) == 0
    assert main(["plan", "--card", "3090,4090", "--out", str(fleet_out)]) == 0
    assert capsys.readouterr().out == ""
    assert fit_out.read_text().startswith("largest max_model_len that fits:") and "4090" in fleet_out.read_text()
    assert main(["plan", "--fit", "max_model_len", "--format", "md"]) == 0
    assert capsys.readouterr().out.startswith("# vLLM start-up memory prediction")
    values = []
    for extra in ([], ["--calibration", "shipped"]):
        assert main(["plan", "--card", "3090", "--vllm", "0.6.3", "--fit", "max_model_len", "--json", *extra]) == 0
        values.append(json.loads(capsys.readouterr().out)["value"])
    assert values[0] != values[1]  # the calibration moves the answer (it was ignored: the same 7,984 twice)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("argv", [["plan"], ["plan", "--card", "all"],
                                  ["explain", str(Path(__file__).resolve().parents[1] / "data" / "logs"
                                                  / "gpu_v063_profile_vision_oom.log")]])
def test_a_full_standard_output_is_one_line_and_a_non_zero_exit(argv):                       # newcomer-3 #27, #162
    root = Path(__file__).resolve().parents[2]
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "diagnostics", *argv], stdout=full, stderr=subprocess.PIPE,
                              text=True, cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"vllm-memcheck {argv[0]}: error: cannot write the answer to "
                                                "standard output (No space left on device); accepted: a writable "
                                                "standard output, or --out FILE where the command has it"]


def test_version_and_empty_explain_options_and_selfcheck_card_are_one_line(capsys):        # newcomer-3 #35, #346, #351
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("vllm-memcheck ")
    log = str(Path(__file__).resolve().parents[1] / "data" / "logs" / "gpu_v063_profile_vision_oom.log")
    assert main(["explain", log, "--model", ""]) == 2
    assert "--model '' names nothing" in capsys.readouterr().err
    assert main(["selfcheck", "--card", "bogus"]) == 2
    assert "unknown card 'bogus'" in capsys.readouterr().err


@pytest.mark.parametrize("card, vllm", [("v100-16", "0.32.0"), ("t4", "0.6.3")])              # newcomer-3 #74, #75
def test_bfloat16_on_a_card_without_it_is_refused_as_vllm_refuses_it(capsys, card, vllm):
    assert main(["plan", "--card", card, "--vllm", vllm, "--set", "dtype=bfloat16"]) == 2
    err = capsys.readouterr().err
    assert "Bfloat16 is only supported on GPUs with compute capability of at least 8.0" in err
    assert main(["plan", "--card", card, "--vllm", vllm, "--set", "dtype=float16"]) == 0


# -- --fit KNOB: multimodal knobs (issue #23) ------------------------------------------------------------------------

def test_fit_knob_text_in_the_users_units(capsys):
    assert main(["plan", "--model", "qwen2.5-vl-7b", "--card", "l4", "--vllm", "0.32.0", "--set", "max_model_len=32768",
                 "--set", "max_num_batched_tokens=2048", "--set", 'limit_mm_per_prompt={"video":0}',
                 "--fit", "max_pixels"]) == 0
    out = capsys.readouterr().out
    head = out.splitlines()[0]
    assert head.startswith("largest max_pixels that fits: ") and "x 28 x 28 px: at most" in head
    assert '(--set mm_processor_kwargs={"max_pixels": ' in head and "verdict: ok" in out
    assert "just above: max_pixels=" in out and "-> kv_too_small" in out


def test_fit_knob_json_and_frontier(capsys):
    doc = _json(capsys, "--model", "minicpm-v-2_6", "--card", "l4", "--vllm", "0.32.0", "--set", "max_model_len=4096",
                "--set", "max_num_batched_tokens=2048", "--set", "gpu_memory_utilization=0.8",
                "--set", 'limit_mm_per_prompt={"video":0}', "--fit", "max_slice_nums")
    assert doc["setting"] == "max_slice_nums" and doc["label"] == f"{doc['value']} slices"
    assert doc["at"]["verdict"] == "ok" and doc["above"]["verdict"] != "ok"
    assert doc["above_value"] == doc["value"] + 1 and doc["knob"]["setting"] == "mm_processor_kwargs"
    assert main(["plan", "--model", "qwen2.5-vl-7b", "--card", "4090", "--vllm", "0.32.0",
                 "--set", 'limit_mm_per_prompt={"video":0}', "--fit", "max_model_len,max_pixels"]) == 0
    out = capsys.readouterr().out
    assert "largest max_model_len per max_pixels" in out and "1,003,520 (1280 x 28 x 28 px" in out


def test_fit_knob_alias_answers_in_the_name_asked(capsys):                                  # newcomer pass
    assert main(["plan", "--model", "internvl3-8b", "--card", "l4", "--vllm", "0.32.0", "--set", "max_model_len=32768",
                 "--set", "max_num_batched_tokens=2048", "--set", 'limit_mm_per_prompt={"video":0}',
                 "--fit", "max_dynamic_patch", "--no-vllm-exact"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("largest max_dynamic_patch that fits: ") and "just above: max_dynamic_patch=" in out


def test_fit_md_when_nothing_fits_says_so(capsys):                                      # newcomer pass
    argv = ["plan", "--card", "t4", "--vllm", "0.32.0", "--fit", "max_slice_nums", "--no-vllm-exact"]
    assert main(argv) == 0 and capsys.readouterr().out.startswith("no max_slice_nums from 1 slice to 9 slices")
    assert main([*argv, "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert "plan --fit max_slice_nums: no value from 1 slice to 9 slices plans ok; this report is the plan at the " \
           "lowest, 1 slice, which does not fit" in md
    assert "## What fits" in md and "Nothing fits on this card." in md


@pytest.mark.parametrize("argv, fragment", [
    (["--fit", "max_pixels"], "not a multimodal knob of openbmb/MiniCPM-V-2_6"),
    (["--fit", "max_slice_nums", "--set", 'mm_processor_kwargs={"max_slice_nums":4}'], "together"),
    (["--fit", "max_slice_nums,max_model_len", "--card", "all"], "a --fit frontier is for one card"),
    (["--fit", "max_slice_nums,num_frames"], "one engine setting"),
    (["--fit", "max_slice_nums", "--vllm", "0.8.3"], "not a multimodal knob"),
])
def test_fit_knob_errors_one_line_exit_2(argv, fragment, capsys):
    assert main(["plan", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and "\n" not in err and err.startswith("vllm-memcheck plan: error:")


def test_fit_knob_over_cards_one_row_each_in_the_knobs_units(capsys):
    doc = _json(capsys, "--model", "qwen2.5-vl-7b", "--card", "3090,l4,h100-80", "--vllm", "0.32.0",
                "--set", "max_model_len=32768", "--set", 'limit_mm_per_prompt={"video":0}', "--fit", "max_pixels")
    rows = {r["card"]: r for r in doc["rows"]}
    assert all(r["fit"] == "max_pixels" and r["value"] % 784 == 0 and r["verdict"] == "ok" for r in rows.values())
    assert rows["l4"]["value"] < rows["3090"]["value"] <= rows["h100-80"]["value"] == 32768 * 784
    assert rows["h100-80"]["label"].startswith("25,690,112 (32768 x 28 x 28 px")
    assert main(["plan", "--card", "3090", "--vllm", "0.8.3,0.32.0", "--set", "max_model_len=8192",
                 "--fit", "max_slice_nums"]) == 0
    out = capsys.readouterr().out
    assert "largest max_slice_nums" in out and "not a multimodal knob of openbmb/MiniCPM-V-2_6 in vLLM 0.8.3" in out


@pytest.mark.parametrize("argv", [
    ["--card", "3090", "--set", "max_model_len=8192", "--set", 'limit_mm_per_prompt={"video":0}',
     "--set", "max_num_batched_tokens=4096", "--fit", "max_slice_nums"],
    ["--model", "qwen2.5-vl-7b", "--card", "4090", "--set", "max_model_len=32768",
     "--set", 'limit_mm_per_prompt={"video":0}', "--fit", "max_pixels", "--no-vllm-exact"],
    ["--model", "qwen2.5-vl-7b", "--card", "4090", "--set", "max_model_len=32768", "--fit", "max_pixels",
     "--no-vllm-exact"],
    ["--card", "3090", "--set", "max_model_len=8192", "--set", 'limit_mm_per_prompt={"video":0}',
     "--fit", "max_num_batched_tokens,max_slice_nums"],
])
def test_readme_knob_answers_are_what_plan_prints(argv, capsys):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert main(["plan", "--vllm", "0.32.0", *argv]) == 0
    out = capsys.readouterr().out.splitlines()
    shown = [line for line in out if line.startswith(("largest", "profile run", "just above", "above:", "9 slices",
                                                      "1 slice "))]
    assert shown and all(line in readme for line in shown), [line for line in shown if line not in readme]


@pytest.mark.parametrize("fit", ["max_model_len", "gpu_memory_utilization", "max_slice_nums"])
def test_fit_with_settings_vllm_refuses_everywhere_exits_2_as_plain_plan(fit, capsys):
    """It printed "vLLM refuses the settings" with exit 0 while plain plan exits 2 on the same --set."""
    argv = ["plan", "--card", "4090", "--vllm", "0.32.0", "--no-vllm-exact", "--set", "max_num_seqs=1000000000"]
    assert main([*argv, "--fit", fit]) == 2
    err = capsys.readouterr().err.strip()
    assert f"refuses these settings at start-up at every {fit} tried: max_num_batched_tokens" in err
    assert "\n" not in err


def test_a_table_whose_every_row_fails_alike_exits_2_in_one_line(capsys):
    """--card 4090,3090 --fit max_pixels with image and video off printed a table of identical n/a rows, exit 0."""
    assert main(["plan", "--model", "qwen2.5-vl-7b", "--card", "4090,3090", "--vllm", "0.32.0", "--no-vllm-exact",
                 "--fit", "max_pixels", "--set", 'limit_mm_per_prompt={"image":0,"video":0}']) == 2
    err = capsys.readouterr().err.strip()
    assert "--fit max_pixels: image and video are off" in err and "\n" not in err


@pytest.mark.parametrize("fmt", ["text", "md"])
def test_fit_max_model_len_says_where_it_starts_and_why(fmt, capsys):
    assert main(["plan", "--card", "4090", "--vllm", "0.32.0", "--no-vllm-exact", "--fit", "max_model_len",
                 "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert "max_model_len starts at 656: one largest image item is 640 tokens" in out
    assert "largest max_model_len that fits: 16 " not in out
