from __future__ import annotations

import pytest

from diagnostics import versions
from diagnostics.errors import UsageError
from diagnostics.versions import KNOWN_VERSIONS, NEWEST, Version, engine, family, parse_version


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0.6.3.post1", (0, 6, 3)),
        ("v0.8.4", (0, 8, 4)),
        ("0.7.2.dev62+g56534cd5", (0, 7, 2)),
        ("0.10.0-b4", (0, 10, 0)),
        ("0.9.0.1", (0, 9, 0)),
        ("0.33", (0, 33, 0)),
        (" 0.5.4 ", (0, 5, 4)),
    ],
)
def test_parse_tolerant(text, expected):
    assert parse_version(text) == Version(*expected)
    assert str(parse_version(text)) == ".".join(map(str, expected))


def test_versions_compare_numerically_not_as_text():
    assert parse_version("0.10.0") > parse_version("0.9.2")
    assert parse_version("0.8.10") > parse_version("0.8.9")
    assert sorted(map(parse_version, ["0.10.1", "0.6.3", "0.33.0", "0.9.0"]))[0] == (0, 6, 3)


@pytest.mark.parametrize("bad", ["0.3.3", "0.1.dev4927+geda5043", "1.0.0", "0.35.0", "latest", "", None])
def test_unsupported_or_garbage_is_usage_error_naming_range(bad):
    with pytest.raises(UsageError) as exc:
        parse_version(bad)
    assert "0.4.0" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("text", ["0.4.0", "0.4.3", "0.5.0", "0.5.3.post1"])
def test_issue11_0_4_and_0_5_0_to_0_5_3_share_the_v0_legacy_rules(text):
    # explain reads 0.5.3 logs (field case vllm-7256); plan plans for them with 0.5.4's V0 rules
    assert (engine(text), family(text)) == ("V0", "v0-legacy")
    assert str(parse_version(text)) in KNOWN_VERSIONS


@pytest.mark.parametrize(
    "version, kwargs, reason",
    [
        ("0.8.5", {"capability": (7, 0)}, "compute capability 7.0 < 8.0"),  # a6: V100
        ("0.10.1", {"capability": (7, 5)}, "compute capability 7.5 < 8.0"),  # a6: T4, last version with the rule
        ("0.8.2", {"v0_only_until": Version(0, 8, 3)}, "V0-only"),  # a7: MiniCPM-V SupportsV0Only
        ("0.9.1", {"dtype_bytes": 4}, "float32"),  # a6: dtype other than fp16/bf16
        ("0.9.2", {"kv_cache_dtype": "fp8", "capability": (8, 6)}, "kv_cache_dtype=fp8"),  # c10
        ("0.8.0", {"pp": 2}, "pipeline_parallel_size=2"),  # "PP" (arg_utils.py 0.8.0:1590)
        ("0.8.5", {"pp": 4}, "only with Ray"),  # 0.8.5:1476-1482, the default executor is mp
        ("0.8.5", {"gguf": True}, "GGUF"),  # V1_UNSUPPORTED_QUANT (0.8.5:1389)
    ],
)
def test_audit_a6_a7_v1_oracle_falls_back_to_v0(version, kwargs, reason):
    why = versions.v1_fallback(version, **kwargs)
    assert why is not None and reason in why
    assert engine(version, None, why) == "V0" and family(version, None, why) == "v0-merged"


@pytest.mark.parametrize(
    "version, kwargs",
    [
        ("0.10.2", {"capability": (7, 0)}),  # a6: the capability rule is gone in 0.10.2
        ("0.8.3", {"v0_only_until": Version(0, 8, 3)}),  # a7: MiniCPM-V runs on V1 from 0.8.3
        ("0.9.2", {"dtype_bytes": 4}),
        ("0.9.2", {"kv_cache_dtype": "fp8", "capability": (9, 0)}),  # FlashAttention 3 has fp8 on Hopper
        ("0.8.5", {"capability": (8, 0)}),
        ("0.11.0", {"capability": (7, 0), "dtype_bytes": 4}),  # no oracle (V0 is gone)
        ("0.9.0", {"pp": 2, "gguf": True}),  # mp runs PP on V1 from 0.9.0 (:1378); gguf left the list
    ],
)
def test_audit_a6_no_fallback_outside_the_rules(version, kwargs):
    assert versions.v1_fallback(version, **kwargs) is None
    assert engine(version, None, None) == "V1"



@pytest.mark.parametrize(
    "version, use_v1, eng, fam",
    [
        ("0.5.4", None, "V0", "v0-legacy"),
        ("0.6.3", None, "V0", "v0-legacy"),
        ("0.7.0", None, "V0", "v0-legacy"),
        ("0.7.1", None, "V0", "v0-merged"),
        ("0.7.3", True, "V1", "v1"),
        ("0.8.0", None, "V1", "v1"),
        ("0.10.2", False, "V0", "v0-merged"),
        ("0.26.0", None, "V1", "v1"),
        ("0.27.0", None, "V1", "v1-consumed"),
        ("0.33.0", None, "V1", "v1-consumed"),
        ("0.34.0", None, "V1", "v1-consumed"),
    ],
)
def test_engine_and_family(version, use_v1, eng, fam):
    assert engine(version, use_v1) == eng
    assert family(version, use_v1) == fam


def test_impossible_engine_choices():
    with pytest.raises(UsageError):
        engine("0.6.3", True)
    with pytest.raises(UsageError):
        engine("0.11.0", False)


def test_known_versions_are_sorted_and_end_at_newest():
    parsed = [parse_version(v) for v in KNOWN_VERSIONS]
    assert parsed == sorted(parsed) and KNOWN_VERSIONS[-1] == NEWEST == "0.34.0"
    assert "0.6.3" in KNOWN_VERSIONS and "0.8.1" in KNOWN_VERSIONS and "0.20.0" in KNOWN_VERSIONS


def test_default_version_reads_metadata_without_importing_vllm(monkeypatch):
    monkeypatch.setattr(versions, "installed_version", lambda: "0.6.3.post1")
    assert versions.default_version() == "0.6.3"
    monkeypatch.setattr(versions, "installed_version", lambda: None)
    assert versions.default_version() == NEWEST
    monkeypatch.setattr(versions, "installed_version", lambda: "0.1.dev1")
    assert versions.default_version() == NEWEST


def test_core_module_does_not_import_vllm():
    import subprocess
    import sys

    code = "import sys, diagnostics.versions as v; v.default_version(); print('vllm' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


def test_read_version_is_lenient_and_parse_version_checks_the_range():
    from diagnostics.errors import UsageError
    from diagnostics.versions import Version, parse_version, read_version

    assert read_version("0.6.3.post1") == Version(0, 6, 3)
    assert read_version("v0.8.4") == (0, 8, 4)
    assert read_version("0.3.3") == (0, 3, 3)  # outside the planned range, still read
    assert read_version("not a version") is None and read_version(None) is None
    assert parse_version("0.10.1.post1") == (0, 10, 1)
    with pytest.raises(UsageError, match="unsupported vLLM version"):
        parse_version("0.3.3")


def test_the_planned_range_is_one_fact():
    """NEWEST and OLDEST decide the known releases, the accepted range's text and `supported` (they were four
    literals: the release list, NEWEST, the range text and the bound in `supported`)."""
    from diagnostics import versions

    newest, oldest = versions.parse_version(versions.NEWEST), versions.parse_version(versions.OLDEST)
    assert versions.KNOWN_VERSIONS[0] == versions.OLDEST and versions.KNOWN_VERSIONS[-1] == versions.NEWEST
    assert f"0.{newest.minor}.x" in versions.ACCEPTED_RANGE and versions.OLDEST in versions.ACCEPTED_RANGE
    assert versions.supported(Version(0, newest.minor, 9)) and not versions.supported(Version(0, newest.minor + 1, 0))
    assert versions.supported(oldest) and not versions.supported(Version(oldest.major, oldest.minor - 1, 9))
