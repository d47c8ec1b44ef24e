"""diagnostics.suite.hub: which models are fetched, which starts run offline, and one line when the hub fails."""

from __future__ import annotations

import pytest

from diagnostics.suite import hub


def test_only_org_name_ids_that_are_no_local_directory_are_fetched(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert hub.is_hub_id("openbmb/MiniCPM-V-2_6") and hub.is_hub_id("org/some.model-v2")
    for not_hub in ("kit:tiny-text", "./models/x", "/abs/path", "~/m", "gpt2", "org/", "a/b/c"):
        assert not hub.is_hub_id(not_hub), not_hub
    (tmp_path / "org" / "local").mkdir(parents=True)
    assert not hub.is_hub_id("org/local")  # a directory here wins over the hub


def test_offline_only_for_a_local_directory(tmp_path):
    assert hub.start_env(str(tmp_path)) == {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    assert hub.start_env("openbmb/MiniCPM-V-2_6") == {}


@pytest.mark.parametrize("offline, says", [
    ("", "cannot reach the Hugging Face hub to fetch org/m (LocalEntryNotFoundError: no route)"),
    ("1", "org/m is not in the local Hugging Face cache and HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set"),
])
def test_a_hub_failure_is_one_line(monkeypatch, offline, says):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub.errors import LocalEntryNotFoundError

    def refuse(*args, **kwargs):
        raise LocalEntryNotFoundError("no route\nsecond line")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", offline)  # CI (.ci/run) exports both
    said = []
    with pytest.raises(hub.HubUnreachable) as err:
        hub.download_model("org/m", "dummy", say=said.append)
    assert says in str(err.value) and "\n" not in str(err.value)
    assert len(said) == 1 and "once, before the first start" in said[0] and "config and tokenizer files" in said[0]


def test_a_fetch_is_two_lines_and_returns_the_snapshot(monkeypatch, tmp_path):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo, **kw: calls.append((repo, kw)) or str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    said = []
    assert hub.download_model("org/m", "auto", say=said.append) == str(tmp_path)
    assert calls == [("org/m", {"allow_patterns": None, "local_files_only": False})]  # auto: the weights too
    assert said[-1] == f"vllm-memcheck: org/m is at {tmp_path}" and len(said) == 2
