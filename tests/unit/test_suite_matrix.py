"""The matrix file: expansion, readable ids, scenarios, and errors that name file, line and what is wrong."""

from __future__ import annotations

import textwrap

import pytest

from diagnostics.errors import UsageError
from diagnostics.suite.matrix import SHIPPED_MATRIX, MatrixError, combination_id, load_matrix, parse_matrix


def write(tmp_path, text, name="m.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_shipped_matrix_expands_to_45_axis_combinations_plus_3_scenarios():
    matrix = load_matrix(SHIPPED_MATRIX)
    ids = matrix.ids()
    assert len(ids) == 45 + 3
    assert len(set(ids)) == len(ids)
    assert ids[:3] == ["mml2048-seqs16-util0.9", "mml2048-seqs16-util0.95", "mml2048-seqs16-util1.0"]
    assert "mml4096-seqs32-util1.0" in ids and ids[44] == "mml8192-seqs256-util1.0"
    assert ids[45:] == ["defaults", "seed-3090", "vllm-example-l4"]
    by_id = {c.id: c for c in matrix.combinations}
    assert by_id["mml4096-seqs32-util1.0"].settings == {
        "max_model_len": 4096, "max_num_seqs": 32, "gpu_memory_utilization": 1.0}
    assert by_id["seed-3090"].settings == {"max_model_len": 4096, "max_num_seqs": 32, "gpu_memory_utilization": 1.0}
    assert by_id["defaults"].settings == {}
    assert by_id["vllm-example-l4"].settings == {
        "max_model_len": 4096, "max_num_seqs": 2, "limit_mm_per_prompt": {"image": 1, "video": 0}}
    assert matrix.defaults["trust_remote_code"] is True
    assert matrix.model == "openbmb/MiniCPM-V-2_6"
    assert all(c.scenario is None for c in matrix.combinations[:45])
    assert by_id["seed-3090"].scenario == "seed-3090"


def test_ids_are_readable_and_keep_the_axis_order():
    assert combination_id({"max_model_len": 4096, "max_num_seqs": 32, "gpu_memory_utilization": 1.0}) == \
        "mml4096-seqs32-util1.0"
    assert combination_id({"gpu_memory_utilization": 0.95, "max_model_len": 2048}) == "util0.95-mml2048"
    assert combination_id({"kv_cache_memory_bytes": 64 << 20}) == "kv64MiB"
    assert combination_id({"kv_cache_memory_bytes": 65536}) == "kv65536"
    assert combination_id({"enforce_eager": True, "block_size": 16}) == "eagertrue-block_size16"


def test_scenario_expectations_thresholds_and_request(tmp_path):
    path = write(tmp_path, """
        [matrix]
        model = "kit:tiny-text"
        request = true
        [defaults]
        enforce_eager = true
        dtype = "float32"
        [thresholds.cpu]
        peak_gib = 8.0
        [scenarios.kv-small]
        max_model_len = 4096
        kv_cache_memory_bytes = 1048576
        expect = "kv_too_small"
        request = false
        [scenarios.table-expect]
        max_model_len = 256
        [scenarios.table-expect.expect]
        outcome = "oom"
        [scenarios.table-expect.thresholds.3090]
        profile_peak_gib = 20
        peak_gib = 23.5
    """)
    matrix = load_matrix(path)
    small, table = matrix.combinations
    assert (small.id, small.expect, small.request) == ("kv-small", "kv_too_small", False)
    assert small.settings == {"max_model_len": 4096, "kv_cache_memory_bytes": 1048576}
    assert small.thresholds == {"cpu": {"peak_gib": 8.0}}
    assert (table.expect, table.request) == ("oom", True)
    assert table.thresholds == {"cpu": {"peak_gib": 8.0}, "3090": {"profile_peak_gib": 20.0, "peak_gib": 23.5}}
    assert matrix.model == "kit:tiny-text"
    assert matrix.defaults == {"enforce_eager": True, "dtype": "float32"}


def error_of(tmp_path, text) -> str:
    path = write(tmp_path, text, "bad.toml")
    with pytest.raises(MatrixError) as info:
        load_matrix(path)
    assert isinstance(info.value, UsageError)
    return str(info.value)


def test_bad_toml_names_file_and_line(tmp_path):
    message = error_of(tmp_path, """
        [axes]
        max_model_len = [2048, 4096]
        max_num_seqs = [16, 32
        gpu_memory_utilization = [0.9]
    """)
    assert message.startswith(f"{tmp_path / 'bad.toml'}:4: not valid TOML")


def test_unknown_setting_names_its_line_and_the_accepted_names(tmp_path):
    message = error_of(tmp_path, """
        [defaults]
        trust_remote_code = true

        [axes]
        max_model_len = [2048]
        max_num_seq = [16, 32]
    """)
    assert message.startswith(f"{tmp_path / 'bad.toml'}:6: in [axes]: unknown setting 'max_num_seq'; accepted:")
    assert "max_num_seqs" in message


def test_wrong_type_names_the_line_and_the_type(tmp_path):
    message = error_of(tmp_path, """
        [scenarios.one]
        max_model_len = 4096

        [scenarios.two]
        max_model_len = "4096"
    """)
    assert message == (f"{tmp_path / 'bad.toml'}:5: in [scenarios.two]: setting max_model_len='4096' has the wrong "
                       "type; accepted: integer, -1 or auto")
    message = error_of(tmp_path, """
        [axes]
        enforce_eager = [1]
    """)
    assert message.startswith(f"{tmp_path / 'bad.toml'}:2: in [axes]: setting enforce_eager=1 has the wrong type")


def test_out_of_range_value_names_the_line(tmp_path):
    message = error_of(tmp_path, """
        [axes]
        gpu_memory_utilization = [0.9, 1.5]
    """)
    assert message.startswith(f"{tmp_path / 'bad.toml'}:2: in [axes]: setting gpu_memory_utilization=1.5 is out of range")


def test_empty_axis_names_the_line(tmp_path):
    message = error_of(tmp_path, """
        [axes]
        max_model_len = [2048]

        max_num_seqs = []
    """)
    assert message == f"{tmp_path / 'bad.toml'}:4: axis 'max_num_seqs' is empty; give at least one value"


def test_other_mistakes(tmp_path):
    assert ":3: expect in [scenarios.x] must be one of" in error_of(tmp_path, """
        [scenarios.x]
        max_model_len = 4096
        expect = "exploded"
    """)
    assert ":3: unknown threshold 'peak' in [scenarios.x.thresholds.3090]" in error_of(tmp_path, """
        [scenarios.x]
        [scenarios.x.thresholds.3090]
        peak = 3
    """)
    assert "the matrix has no combinations" in error_of(tmp_path, """
        [defaults]
        dtype = "float32"
    """)
    assert ":1: unknown table [setting]" in error_of(tmp_path, """
        [setting]
        max_model_len = 1
    """)


def test_parse_matrix_without_a_file_uses_a_placeholder_name():
    with pytest.raises(MatrixError) as info:
        parse_matrix("[axes]\nmax_model_len = 5\n")
    assert str(info.value) == "<matrix>:2: axis 'max_model_len' must be a list of values, not 5"


def test_matrix_is_core_it_imports_neither_torch_nor_vllm():
    import subprocess
    import sys

    code = ("import sys, diagnostics.suite.matrix as m; m.load_matrix(m.SHIPPED_MATRIX); "
            "print(sorted(k for k in ('torch', 'vllm') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_worst_case_and_a_planted_budget_per_matrix_and_scenario():                       # issue 25
    matrix = parse_matrix(textwrap.dedent("""
        [matrix]
        worst_case = true
        [axes]
        max_model_len = [256]
        [scenarios.off]
        max_model_len = 512
        worst_case = false
        [scenarios.planted]
        max_model_len = 4096
        planted_budget_mib = 4
    """))
    by_id = {c.id: c for c in matrix.combinations}
    assert (by_id["mml256"].worst_case, by_id["off"].worst_case, by_id["planted"].worst_case) == (True, False, True)
    assert by_id["planted"].planted_budget_mib == 4 and "planted_budget_mib" not in by_id["planted"].settings
    assert parse_matrix("[scenarios.a]\nmax_model_len = 256\n").combinations[0].worst_case is None  # plugin decides
    with pytest.raises(MatrixError, match="worst_case in \\[matrix\\] must be true or false, not 'yes'"):
        parse_matrix('[matrix]\nworst_case = "yes"\n[scenarios.a]\nmax_model_len = 256\n')
    with pytest.raises(MatrixError, match="planted_budget_mib in \\[scenarios.a\\] must be a positive whole number"):
        parse_matrix("[scenarios.a]\nmax_model_len = 256\nplanted_budget_mib = 0\n")


def test_a_matrix_wide_planted_budget_reaches_every_start_unless_a_scenario_sets_its_own():  # issue 23
    matrix = parse_matrix(textwrap.dedent("""
        [matrix]
        planted_budget_mib = 104
        [axes]
        max_model_len = [256]
        [scenarios.own]
        max_model_len = 512
        planted_budget_mib = 8
    """))
    by_id = {c.id: c for c in matrix.combinations}
    assert matrix.planted_budget_mib == 104  # what the --search probes get (suite/search_run.py)
    assert (by_id["mml256"].planted_budget_mib, by_id["own"].planted_budget_mib) == (104, 8)
    assert parse_matrix("[scenarios.a]\nmax_model_len = 256\n").planted_budget_mib is None
    with pytest.raises(MatrixError, match="planted_budget_mib in \\[matrix\\] must be a positive whole number"):
        parse_matrix("[matrix]\nplanted_budget_mib = -4\n[scenarios.a]\nmax_model_len = 256\n")


@pytest.mark.parametrize("data, words", [                                                  # newcomer-3 appendix
    (b"\xff\xfe[scenarios.a]\nmax_model_len = 256\n", "not UTF-8 text (byte 0xff at offset 0)"),
    (b'[matrix]\nmodel = 123\n[scenarios.a]\nmax_model_len = 256\n', "model in [matrix] must be text, not 123"),
    (b'[matrix]\nname = ["x"]\n[scenarios.a]\nmax_model_len = 256\n', "name in [matrix] must be text"),
    (b'[matrix]\ndescription = 5\n[scenarios.a]\nmax_model_len = 256\n', "description in [matrix] must be text"),
    (b'[scenarios.""]\nmax_model_len = 256\n', "scenario name '' names nothing"),
])
def test_a_matrix_the_sweep_cannot_use_is_one_line(tmp_path, data, words):
    path = tmp_path / "m.toml"
    path.write_bytes(data)
    with pytest.raises(MatrixError) as err:
        load_matrix(path)
    assert words in str(err.value) and "\n" not in str(err.value) and ":?:" not in str(err.value)


def test_a_utf8_bom_matrix_reads(tmp_path):                                                 # newcomer-3 #255
    path = tmp_path / "m.toml"
    path.write_bytes("\ufeff[scenarios.a]\nmax_model_len = 256\n".encode())
    assert load_matrix(path).ids() == ["a"]
