"""engine/child.py without vLLM: the settings it passes, torch's statistics and their scope, the engine that ran."""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import pytest

from diagnostics.engine.child import apply_env_settings, engine_kwargs, engine_of, safe_torch_stats, torch_stats


def fake_torch(monkeypatch, initialized: bool, allocated: int = 5 << 30):
    cuda = SimpleNamespace(is_available=lambda: True, is_initialized=lambda: initialized,
                           memory_stats=lambda: {"num_ooms": 1, "allocated_bytes.all.peak": allocated},
                           max_memory_allocated=lambda: allocated, max_memory_reserved=lambda: allocated + 1)
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))


def test_torch_stats_without_cuda_in_this_process_report_nothing(monkeypatch):          # review F9 (Appendix A)
    fake_torch(monkeypatch, initialized=False, allocated=0)
    stats = torch_stats()
    assert stats["max_memory_allocated"] is None and stats["cuda_initialized"] is False  # unknown, not 0
    assert "unknown" in stats["scope"]


def test_torch_stats_of_an_engine_in_this_process_are_its_peaks(monkeypatch):          # review F9
    fake_torch(monkeypatch, initialized=True)
    stats = torch_stats()
    assert stats["max_memory_allocated"] == 5 << 30 and stats["num_ooms"] == 1
    assert stats["scope"].startswith("the engine in this process")


def test_broken_torch_stats_never_fail_a_start(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=None))
    assert safe_torch_stats()["error"].startswith("AttributeError")


def test_engine_of_names_the_engine_class_that_runs():                                 # compat review item 6
    v1 = type("LLMEngine", (), {"__module__": "vllm.v1.engine.llm_engine"})
    v0 = type("LLMEngine", (), {"__module__": "vllm.engine.llm_engine"})
    assert engine_of(SimpleNamespace(llm_engine=v1())) == "V1"
    assert engine_of(SimpleNamespace(llm_engine=v0())) == "V0"


def test_engine_kwargs_leave_out_env_settings_and_unset_values():
    spec = {"settings": {"use_v1": True, "max_num_seqs": 4, "dtype": None}, "load_format": "dummy"}
    assert engine_kwargs(spec) == {"max_num_seqs": 4, "load_format": "dummy"}


def test_the_pp_layer_partition_is_an_environment_variable(monkeypatch):
    monkeypatch.delenv("VLLM_PP_LAYER_PARTITION", raising=False)
    settings = {"pipeline_parallel_size": 2, "VLLM_PP_LAYER_PARTITION": "20,7"}
    assert engine_kwargs({"settings": settings}) == {"pipeline_parallel_size": 2}
    apply_env_settings(settings)
    assert os.environ["VLLM_PP_LAYER_PARTITION"] == "20,7"  # read by get_pp_indices (distributed/utils.py:142)


def test_every_vllm_env_setting_is_exported_not_passed_to_llm(monkeypatch):  # was an LLM(...) kwarg: a TypeError
    monkeypatch.delenv("VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS", raising=False)
    settings = {"max_num_seqs": 4, "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": False}
    assert engine_kwargs({"settings": settings}) == {"max_num_seqs": 4}
    apply_env_settings(settings)
    assert os.environ["VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS"] == "0"


# -- the worst-case request's prompt (issue 25), with a real tokenizer of the kits --------------------------------
def kit_tokenizer(tmp_path):
    pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    from diagnostics.kit.tiny_text import EOS, SPECIAL_TOKENS, SHAPES
    from diagnostics.kit.tokenizer import TokenizerSpec, build_tokenizer

    build_tokenizer(tmp_path, TokenizerSpec(tuple(SPECIAL_TOKENS), eos=EOS, pad=EOS, vocab_size=SHAPES["vocab_size"]))
    return transformers.AutoTokenizer.from_pretrained(str(tmp_path))


def test_worst_case_prompt_is_exact_for_text_and_repeats_the_placeholders_for_items(tmp_path):
    from diagnostics.engine.child import FILLER, worst_case_prompt

    tokenizer = kit_tokenizer(tmp_path)
    assert len(tokenizer.encode(FILLER * 5, add_special_tokens=False)) == 5  # one token per filler word
    text = worst_case_prompt(tokenizer, {"items": []}, None, 4080)
    assert set(text) == {"prompt_token_ids"} and len(text["prompt_token_ids"]) == 4080
    case = {"items": [{"modality": "image", "count": 2, "width": 32, "height": 64, "tokens": 10},
                      {"modality": "video", "count": 1, "width": 16, "height": 16, "tokens": 8, "frames": 3}],
            "placeholders": ["<img>", "<vid>"]}
    request = worst_case_prompt(tokenizer, case, "user: <img> what?", 7)
    assert request["prompt"] == "user: <img><img><vid>" + FILLER * 7 + " what?"
    images, video = request["multi_modal_data"]["image"], request["multi_modal_data"]["video"]
    assert [im.size for im in images] == [(32, 64), (32, 64)] and video.shape == (3, 16, 16, 3)


def test_the_engine_group_dies_with_its_launcher_even_on_sigkill(tmp_path):                 # newcomer-3 defect 14
    import os
    import signal
    import subprocess
    import time
    from pathlib import Path

    import pytest

    if not sys.platform.startswith("linux"):
        pytest.skip("prctl(PR_SET_PDEATHSIG) is Linux's")
    root = Path(__file__).resolve().parents[2]
    engine = ("from diagnostics.engine.child import die_with_parent; import subprocess, sys, time; "
              "assert die_with_parent(); p = subprocess.Popen(['sleep', '60']); "  # stands in for EngineCore
              "print(p.pid, flush=True); time.sleep(60)")
    launcher = ("import subprocess, sys, time; "
                f"c = subprocess.Popen([sys.executable, '-c', {engine!r}], start_new_session=True, "
                "stdout=subprocess.PIPE, text=True); "
                "print(c.pid, c.stdout.readline().strip(), flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", launcher], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(root)})
    child, grandchild = map(int, proc.stdout.readline().split())
    proc.kill()  # SIGKILL: no handler of the launcher runs
    proc.wait()
    deadline = time.monotonic() + 10
    def alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, only not reaped
        except OSError:
            return False

    while time.monotonic() < deadline and (alive(child) or alive(grandchild)):
        time.sleep(0.1)
    try:
        assert not alive(child) and not alive(grandchild)
    finally:
        for pid in (child, grandchild):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
