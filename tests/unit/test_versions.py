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


@pytest.mark.parametrize("bad", ["0.5.3", "0.1.dev4927+geda5043", "1.0.0", "0.34.0", "latest", "", None])
def test_unsupported_or_garbage_is_usage_error_naming_range(bad):
    with pytest.raises(UsageError) as exc:
        parse_version(bad)
    assert "0.5.4" in str(exc.value) and "\n" not in str(exc.value)


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
    assert parsed == sorted(parsed) and KNOWN_VERSIONS[-1] == NEWEST == "0.33.0"
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
    assert read_version("0.4.2") == (0, 4, 2)  # outside the planned range, still read
    assert read_version("not a version") is None and read_version(None) is None
    assert parse_version("0.10.1.post1") == (0, 10, 1)
    with pytest.raises(UsageError, match="unsupported vLLM version"):
        parse_version("0.4.2")
