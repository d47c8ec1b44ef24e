"""The newcomer-3 pass's bad inputs (shared/docs/newcomer-3.md, appendix rows 1-375), as bad_inputs.py cases.

Ids are `n3-<the appendix's case id>`. Each contract is the answer the project owes, not what the pass saw: a
row the pass called "silent wrong" expects the refusal or the warning (and stays a problem until it gives it).
Not here, because they need real engine starts or root: the `sweep-*` rows (367-375; SIGKILL is
tests/unit/test_engine_child.py, `--engine-timeout=1e-9` and `KIT:` are plugin rows 268 and 274 below), the
chattr/`su nobody` rows (22, 26, 194, 278, 335) and 190 (3,000 HTML charts, minutes by design).
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "tests" / "data" / "logs"
OOM = (LOGS / "gpu_v063_profile_vision_oom.log").read_bytes()
V0_OK = (LOGS / "gpu_v0_block_ok.log").read_bytes()
V1_OK = (LOGS / "gpu_v1_new_breakdown_ok.log").read_bytes()
SWEEP = [json.loads(line) for line in (ROOT / "tests" / "data" / "results" / "sweep-a10.jsonl").read_text().splitlines()]
METRICS = b"INFO 11-24 15:01:02 metrics.py:351] Avg prompt throughput: 0.0 tokens/s, Running: 0 reqs\n"
KV = (b"INFO 07-04 01:04:14 gpu_executor.py:84] # GPU blocks: 5970, # CPU blocks: 682\n[rank0]: ValueError: The "
      b"model's max seq len (131072) is larger than the maximum number of tokens that can be stored in KV cache "
      b"(95520). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.\n")
SECRET = "OUTSIDE-THE-RUN-n3"
TOKEN = "hf_abcdefghijklmnopqrstuvwxyzABCDEF"
LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "num_hidden_layers": 32,
         "num_attention_heads": 32, "intermediate_size": 11008, "vocab_size": 32000, "max_position_embeddings": 4096,
         "torch_dtype": "float16"}
MATRIX_A = '[matrix]\nmodel = "stand-in-model"\n[defaults]\nenforce_eager = true\nkv_cache_memory_bytes = 67108864\n'


def _jsonl(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def _sweep(**change) -> list[dict]:
    records = json.loads(json.dumps(SWEEP))
    for r in records:
        r.update(change)
    return records


def _runs() -> dict[str, bytes]:
    """runs/<case>/results.jsonl: the A10 fixture altered as the case id says."""
    s = _sweep
    lines = [json.dumps(r) for r in SWEEP]
    runs = {
        "base": _jsonl(SWEEP), "dup": _jsonl(SWEEP + SWEEP[:1]),
        "dup-conflict": _jsonl(SWEEP + [{**SWEEP[0], "outcome": "oom_profile"}]),
        "reordered": _jsonl(SWEEP[::-1]), "crlf": ("\r\n".join(lines) + "\r\n").encode(),
        "bom": b"\xef\xbb\xbf" + _jsonl(SWEEP), "blank-middle": ("\n".join(lines[:2]) + "\n\n\n" + "\n".join(lines[2:])
                                                                 + "\n").encode(),
        "corrupt-middle": ("\n".join(lines[:1]) + '\n{"id": "x", "outc\n' + "\n".join(lines[1:]) + "\n").encode(),
        "nan": _jsonl(s()).replace(b'"peak_device_gib": 20.4', b'"peak_device_gib": NaN'),
        "inf": _jsonl(s()).replace(b'"peak_device_gib": 20.4', b'"peak_device_gib": Infinity'),
        "negative": _jsonl(s(peak_device_gib=-5.0)), "huge": _jsonl(s(peak_device_gib=1e30)),
        "traverse-id": _jsonl([{**SWEEP[0], "id": "../../../escape"}]),
        "long-id": _jsonl([{**SWEEP[0], "id": "x" * 300}]),
        "md-inject-id": _jsonl([{**SWEEP[0], "id": "a|b\n<script>alert(1)</script>"}]),
        "chart-collide": _jsonl([{**SWEEP[0], "id": "a/b"}, {**SWEEP[1], "id": "a_b"}]),
        "unicode-id": _jsonl([{**SWEEP[0], "id": "組み合わせ"}]), "schema999": _jsonl(s(schema_version=999)),
        "log-abs": _jsonl([{**r, "log_file": "/etc/passwd"} for r in SWEEP]),
        "log-rel-escape": _jsonl([{**r, "log_file": "../../secret.txt"} for r in SWEEP]),
        "timeline-garbage": _jsonl(SWEEP), "bad-outcome": _jsonl(s(outcome="exploded")),
        "no-outcome": _jsonl([{k: v for k, v in r.items() if k != "outcome"} for r in SWEEP]),
        "settings-str": _jsonl(s(settings="max_model_len=4096")), "machine-list": _jsonl(s(machine_info=["a10"])),
        "mixed-card": _jsonl(SWEEP[:2] + [{**r, "model": "Qwen/Qwen2-VL-7B-Instruct",
                                           "machine_info": {**r["machine_info"], "card": "3090"}} for r in SWEEP[2:]]),
        "many-fail": _jsonl({**SWEEP[3], "id": f"f{i}"} for i in range(3000)),
        "card-str-a": _jsonl(s(card="3090")),
        "card-str-b": _jsonl([{**r, "card": "4090", "machine_info": {**r["machine_info"], "card": "4090"}}
                              for r in SWEEP]),
    }
    return {f"runs/{k}/results.jsonl": v for k, v in runs.items()}


def _cmp() -> dict[str, bytes]:
    s = _sweep
    peak_up = json.loads(json.dumps(SWEEP))
    for r in peak_up:
        r["peak_device_gib"] = round(r["peak_device_gib"] * 1.1, 2)
    baseline = {"schema_version": 1, "name": "pinned", "results": SWEEP}
    files = {
        "old.jsonl": _jsonl(SWEEP), "other-model.jsonl": _jsonl(s(model="Qwen/Qwen2-VL-7B-Instruct")),
        "other-card.jsonl": _jsonl([{**r, "machine_info": {**r["machine_info"], "card": "3090",
                                                           "gpu_name": "NVIDIA GeForce RTX 3090"}} for r in SWEEP]),
        "peak-up-10.jsonl": _jsonl(peak_up), "dup-new.jsonl": _jsonl(SWEEP + [{**SWEEP[0], "outcome": "oom_profile"}]),
        "dup-new-rev.jsonl": _jsonl([{**SWEEP[0], "outcome": "oom_profile"}] + SWEEP),
        "peak-null.jsonl": _jsonl(s(peak_device_gib=None, peak_process_gib=None)),
        "kv-zero-old.jsonl": _jsonl(s(kv_cache_tokens=0)),
        "outcome-missing.jsonl": _jsonl([{k: v for k, v in r.items() if k != "outcome"} for r in SWEEP]),
        "id-int.jsonl": _jsonl([{**r, "id": i} for i, r in enumerate(SWEEP)]),
        "empty-ids.jsonl": _jsonl([{**r, "id": ""} for r in SWEEP]),
        "baseline.json": json.dumps(baseline).encode(),
        "baseline-other-model.json": json.dumps({**baseline, "results": s(model="Qwen/Qwen2-VL-7B-Instruct")}).encode(),
        "baseline-empty.json": json.dumps({**baseline, "results": []}).encode(),
        "baseline-schema99.json": json.dumps({**baseline, "schema_version": 99}).encode(),
    }
    return {f"cmp/{k}": v for k, v in files.items()}


def _matrices() -> dict[str, str]:
    scen = '[scenarios.{name}]\nmax_model_len = 256\nexpect = "ok"\n'
    return {
        "matrix-model-int.toml": "[matrix]\nmodel = 123\n" + scen.format(name="a"),
        "matrix-dup-axis.toml": MATRIX_A + "[axes]\nmax_model_len = [256, 256]\n",
        "matrix-float-collide.toml": MATRIX_A + "[axes]\ngpu_memory_utilization = [0.5, 0.50]\n",
        "matrix-long-name.toml": MATRIX_A + scen.format(name="n" * 300),
        "matrix-slash-name.toml": MATRIX_A + scen.format(name='"a/b"'),
        "matrix-dotdot-name.toml": MATRIX_A + scen.format(name='"../../../escaped"'),
        "matrix-empty-name.toml": MATRIX_A + scen.format(name='""'),
        "matrix-unicode-name.toml": MATRIX_A + scen.format(name='"組み合わせ"'),
        "matrix-threshold-typo-card.toml": MATRIX_A + scen.format(name="a") + "[thresholds.cpuu]\npeak_gib = 0.001\n",
        "matrix-threshold-tiny.toml": MATRIX_A + scen.format(name="a") + "[thresholds.cpu]\npeak_gib = 0.001\n",
        "matrix-axis-str.toml": MATRIX_A + '[axes]\nmax_model_len = "256"\n',
        "matrix-axis-mixed.toml": MATRIX_A + "[axes]\nmax_model_len = [256, 512.5]\n",
        "matrix-huge-product.toml": MATRIX_A + "[axes]\nmax_model_len = [" + ", ".join(str(16 * (i + 1)) for i in range(200))
                                   + "]\nmax_num_seqs = [" + ", ".join(str(i + 1) for i in range(200)) + "]\n",
        "matrix-expect-table-bad.toml": MATRIX_A + "[scenarios.a]\nmax_model_len = 256\n[scenarios.a.expect]\n"
                                        'outcome = "fine"\n',
        "matrix-request-str.toml": '[matrix]\nmodel = "stand-in-model"\nrequest = "yes"\n' + scen.format(name="a"),
        "matrix-description-int.toml": '[matrix]\nname = ["x"]\ndescription = 5\n' + scen.format(name="a"),
        "matrix-defaults-conflict.toml": MATRIX_A.replace("enforce_eager = true\n", "enforce_eager = true\n"
                                                          "max_model_len = 512\n") + "[axes]\nmax_model_len = [256]\n",
        "matrix-scenario-equals-axis-id.toml": MATRIX_A + "[axes]\nmax_model_len = [256]\n" + scen.format(name="mml256"),
        "matrix-vllm-refuses.toml": MATRIX_A + "[scenarios.a]\nmax_model_len = 16\nmax_num_seqs = 32\n"
                                    "max_num_batched_tokens = 16\n",
        "matrix-bom.toml": "\ufeff" + MATRIX_A + scen.format(name="a"),
    }


def newcomer3_sandbox(root: Path) -> None:
    """Every file the newcomer-3 cases name, under the bad_inputs sandbox `root` (its proj/ is the stand-in)."""
    text = OOM.decode()
    lines = text.split("\n")
    files: dict[str, bytes] = {
        "oom.log": OOM, "kv.log": KV,
        "mixed-enc.log": (lines[0].encode() + b"\n" + "INFO host caf\xe9 started".encode("latin-1") + b"\n"
                          + "\n".join(lines[1:4]).encode("utf-16-le") + b"\n" + "\n".join(lines[4:]).encode()),
        "utf32.log": text.encode("utf-32"), "utf8bom.log": b"\xef\xbb\xbf" + OOM,
        "crlf.log": OOM.replace(b"\n", b"\r\n"), "cr-only.log": OOM.replace(b"\n", b"\r"),
        "double.gz": gzip.compress(gzip.compress(OOM)), "truncated.gz": gzip.compress(OOM)[:200],
        "oom.bz2": bz2.compress(OOM), "oom.xz": lzma.compress(OOM),
        "nul-interleaved.log": OOM.replace(b"\n", b"\n\0"), "oom-then-ok.log": OOM + V0_OK, "ok-then-oom.log": V0_OK + OOM,
        "long-line.log": b"INFO " + b"y" * (64 << 20) + b"\n" + OOM,
        "big-noise.log": METRICS * 200_000 + OOM, "metrics-then-oom.log": METRICS + OOM,
        "metrics3-then-oom.log": METRICS * 3 + OOM,
        "secrets.log": (f"INFO token {TOKEN} key sk-abcdefghijklmnopqrstuvwxyz012345 Authorization: Bearer "
                        "abcdefghijklmnop12345 at /home/bob/models on host gpu-box-17.corp.example.com\n").encode() + OOM,
        "ログ ✓.log": OOM, "nulhead-4k.log": b"\0" * 4096 + OOM, "nulhead-8k.log": b"\0" * 8192 + OOM,
        "nulhead-64k.log": b"\0" * 65536 + OOM, "line-32m.log": b"INFO " + b"y" * (32 << 20) + b"\n" + OOM,
        "b64-8m.log": b"INFO request image data:image/png;base64," + b"QUJD" * (2 << 20) + b"\n" + OOM,
        "day.log": V1_OK + METRICS.replace(b"metrics.py:351]", b"[loggers.py:123]") * 200_000,
        "model-llama/config.json": json.dumps(LLAMA).encode(),
        "model-huge/config.json": json.dumps({**LLAMA, "hidden_size": 10 ** 9}).encode(),
        "model-neg/config.json": json.dumps({**LLAMA, "num_attention_heads": 0}).encode(),
        "model-quant/config.json": json.dumps({"model_type": "qwen2_vl", "architectures":
                                               ["Qwen2VLForConditionalGeneration"], **{k: v for k, v in LLAMA.items()
                                               if k not in ("model_type", "architectures")}, "vision_config": {}}).encode(),
        "cards-inf.toml": b"[cards.mine]\ntotal_gib = inf\n", "cards-nan.toml": b"[cards.mine]\ntotal_gib = nan\n",
        "cards-huge.toml": b"[cards.mine]\ntotal_gib = 1e308\n", "cards-typo.toml": b"[cards.mine]\ntotla_gib = 24\n",
        "cards-override-3090.toml": b"[cards.3090]\ntotal_gib = 1.0\n", "cards-all.toml": b"[cards.all]\ntotal_gib = 24\n",
        "cards-cpu.toml": b"[cards.cpu]\ntotal_gib = 24\n", "cards-unicode.toml": "[cards.\"カード\"]\ntotal_gib = 24\n".encode(),
        "cards-comma.toml": b'[cards."a,b"]\ntotal_gib = 24\n', "cards-noname.toml": b"[cards.mine]\nlabel = 'x'\n",
        "cards-empty.toml": b"", "cards-wrongtop.toml": b"[card.mine]\ntotal_gib = 24\n",
        "cards-headroom-big.toml": b"[cards.mine]\ntotal_gib = 24\nprofile_threshold_gib = -6\n",
        "cards-bool.toml": b"[cards.mine]\ntotal_gib = true\n",
        "cards-dup.toml": b"[cards.mine]\ntotal_gib = 24\n[cards.mine]\ntotal_gib = 25\n",
        "cards-binary.toml": b"\xff\xfe\x00\x01binary", "cards-cpu-override.toml": b"[cards.cpu]\ntotal_gib = 0.001\n",
        "cal-bad.toml": b"[calibration]\nname = 'x'\n[coefficients]\nnon_torch_gib = 'a'\n",
        "cal-huge.toml": b"[calibration]\nname = 'x'\n[coefficients]\nencoder_scale_linear = 1e308\n",
        "cal-unknown.toml": b"[calibration]\nname = 'x'\n[coefficients]\nbogus_coefficient = 1\n",
        "cal-nan.toml": b"[calibration]\nname = 'x'\n[coefficients]\nencoder_scale_linear = nan\n",
        "fit-bad.toml": b"[[sample]]\nlabel = 'x'\n", "fit-badtype.toml": b"[[sample]]\nlabel = 5\ncases = 'x'\n",
        "binary-x.log": bytes(range(256)) * 16, "secret.txt": SECRET.encode() + b"\n",
        "runs/timeline-garbage/timelines/mml2048-seqs16-util0.9.csv": b"\x00garbage,,\nnot,a,csv\n",
        "fake-torch/torch.py": b'raise RuntimeError("broken torch install")\n',
        "bl-results-str.json": b'{"results": "x"}', "bl-empty.json": b'{"schema_version": 1, "results": []}',
        "bl-null.json": b"null",
        **_runs(), **_cmp(),
        **{f"proj/{k}": v.encode() for k, v in _matrices().items()},
    }
    files["proj/bl-results-str.json"] = files["bl-results-str.json"]
    files["proj/bl-empty.json"] = files["bl-empty.json"]
    files["proj/bl-null.json"] = files["bl-null.json"]
    files["proj/cards-inf.toml"] = files["cards-inf.toml"]
    files["proj/cards-binary.toml"] = files["cards-binary.toml"]
    files["proj/cards-cpu-override.toml"] = files["cards-cpu-override.toml"]
    files["proj/matrix-binary.toml"] = b"\xff\xfe\x00\x01 not toml"
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for name in ("sparse-2g.log", "sparse-2g-then-oom.log"):
        with open(root / name, "wb") as f:
            f.truncate(2 << 30)  # a hole: no disk used
    with open(root / "sparse-2g-then-oom.log", "ab") as f:
        f.write(OOM)
    (root / "runs" / "sparse").mkdir(parents=True, exist_ok=True)
    os.symlink(root / "sparse-2g.log", root / "runs" / "sparse" / "results.jsonl")
    (root / "runs" / "isdir" / "results.jsonl").mkdir(parents=True, exist_ok=True)
    (root / "cmp-sparse").mkdir(exist_ok=True)
    os.symlink(root / "sparse-2g.log", root / "cmp-sparse" / "results.jsonl")
    os.symlink(root / "cmp" / "old.jsonl", root / "cmp-old-link.jsonl")
    os.symlink("loop1", root / "loop1")
    (root / "precious").mkdir(exist_ok=True)
    (root / "precious" / "notes.txt").write_text("keep\n")
    (root / "kfile").write_text("x\n")
    (root / "e1").mkdir(exist_ok=True)
    (root / "e2").mkdir(exist_ok=True)
    (root / "proj" / "rd-dir").mkdir(exist_ok=True)
    for project, extra in (("pini", "[pytest]\nmemcheck_card = bogus\n"), ("pini2", "[pytest]\nmemcheck_resume = maybe\n"),
                           ("rr1", None), ("rr2", None), ("rr3", None), ("rr4", None)):
        (root / project).mkdir(exist_ok=True)
        for name in ("conftest.py", "test_startup_matrix.py", "m.toml"):
            (root / project / name).write_bytes((root / "proj" / name).read_bytes())
        if extra:
            (root / project / "pytest.ini").write_text(extra)
    (root / "rr1" / "reports").mkdir(exist_ok=True)
    (root / "rr1" / "reports" / "latest").write_text("20990101-000000\n")
    (root / "rr2" / "reports").mkdir(exist_ok=True)
    (root / "rr2" / "reports" / "latest").write_text("../../../tmp\n")
    record = {"schema_version": 1, "id": "a", "outcome": "ok", "status": "passed", "passed": True}
    for project, records in (("rr3", [record, {**record, "outcome": "oom_profile", "status": "failed",
                                                "passed": False}]),
                             ("rr4", [{**record, "id": "zzz", "model": "other"}])):
        (root / project / "reports" / "r1").mkdir(parents=True, exist_ok=True)
        (root / project / "reports" / "r1" / "results.jsonl").write_bytes(_jsonl(records))
        (root / project / "reports" / "latest").write_text("r1\n")


def newcomer3_cases(Case, CLI, PYTEST) -> list:
    """One Case per appendix row (see the module docstring for the rows left out)."""
    c = []

    def cli(cid, argv, rc, *, says=(), **kw):
        c.append(Case(f"n3-{cid}", list(argv), tuple(rc) if isinstance(rc, (tuple, list)) else (rc,), CLI,
                      says=tuple(says), **kw))

    oom_ok = ("outcome: oom_profile",)
    # -- explain (rows 1-47, 352-359) --
    for cid, name, rc, says in (
            ("explain-mixed-enc", "mixed-enc.log", 0, oom_ok), ("explain-utf32", "utf32.log", 0, oom_ok),
            ("explain-utf8bom", "utf8bom.log", 0, oom_ok), ("explain-crlf", "crlf.log", 0, oom_ok),
            ("explain-cr-only", "cr-only.log", 0, oom_ok), ("explain-double-gz", "double.gz", 0, oom_ok),
            ("explain-truncated-gz", "truncated.gz", 2, ()), ("explain-bz2", "oom.bz2", 0, oom_ok),
            ("explain-xz", "oom.xz", 0, oom_ok), ("explain-nul-interleaved", "nul-interleaved.log", 0, oom_ok),
            ("explain-oom-then-ok", "oom-then-ok.log", 0, ()), ("explain-ok-then-oom", "ok-then-oom.log", 0, oom_ok),
            ("explain-long-line-64m", "long-line.log", 0, oom_ok), ("explain-big-noise", "big-noise.log", 0, oom_ok),
            ("explain-sparse-2g", "sparse-2g.log", 2, ("zero bytes",)),
            ("explain-sparse-2g-then-oom", "sparse-2g-then-oom.log", 0, oom_ok),
            ("explain-symlink-loop", "loop1", 2, ()), ("explain-directory", ".", 2, ()),
            ("explain-fifo-no-writer", "fifo", 2, ("FIFO",)), ("explain-dev-null", "/dev/null", 2, ("empty",)),
            ("explain-proc-file", "/proc/self/status", 0, ()), ("explain-unicode-name", "ログ ✓.log", 0, oom_ok),
            ("explain-long-name", "a" * 300 + ".log", 2, ()),
            ("explain-metrics-then-oom", "metrics-then-oom.log", 0, oom_ok),
            ("explain-metrics3-then-oom", "metrics3-then-oom.log", 0, oom_ok),
            ("explain-nulhead-4k", "nulhead-4k.log", 0, oom_ok), ("explain-nulhead-8k", "nulhead-8k.log", 0, oom_ok),
            ("explain-nulhead-64k", "nulhead-64k.log", 0, oom_ok), ("explain-line-32m", "line-32m.log", 0, oom_ok),
            ("explain-b64-8m", "b64-8m.log", 0, oom_ok), ("explain-day", "day.log", 0, ("outcome: ok",))):
        cli(cid, ["explain", name], rc, says=says, avoid=("oom_request",) if "metrics" in cid or "noise" in cid else (),
            timeout=60)
    o = "oom.log"
    for cid, argv, rc, kw in (
            ("explain-out-dev-full", [o, "--out", "/dev/full"], 2, {}), ("explain-out-dir", [o, "--out", "."], 2, {}),
            ("explain-out-missing-parent", [o, "--out", "nodir/sub/x.txt"], 2, {}),
            ("explain-stdout-dev-full", [o], 1, {"stdout": "/dev/full", "says": ("standard output",)}),
            ("explain-json-and-md", [o, "--json", "--format", "md"], 2, {}),
            ("explain-json-and-text", [o, "--json", "--format", "text"], 2, {}),
            ("explain-model-mismatch", [o, "--model", "qwen2.5-vl-7b"], 0, {"says": ("warning",)}),
            ("explain-card-mismatch", [o, "--card", "h100-80"], 0, {"says": ("warning",)}),
            ("explain-card-cpu-gpu-log", [o, "--card", "cpu"], (0, 2), {"says": ("warning",)}),
            ("explain-card-all", [o, "--card", "all"], 2, {}), ("explain-card-list", [o, "--card", "3090,4090"], 2, {}),
            ("explain-model-empty", [o, "--model", ""], 2, {"says": ("names nothing",)}),
            ("explain-card-empty", [o, "--card", ""], 2, {}),
            ("explain-calibration-missing", [o, "--calibration", "nope.toml"], 2, {}),
            ("explain-calibration-dir", [o, "--calibration", "."], 2, {}),
            ("explain-calibration-devnull", [o, "--calibration", "/dev/null"], 2, {}),
            ("explain-md-card-3090-kv-log", ["kv.log", "--format", "md", "--model", "minicpm-v-2_6", "--card", "3090"],
             0, {"avoid": ("0.33.0", "--set max_model_len=95520")}),
            ("explain-md-secrets", ["secrets.log", "--format", "md"], 0,
             {"avoid": (TOKEN, "sk-abcdefghijklmnop", "/home/bob", "gpu-box-17")}),
            ("explain-text-secrets", ["secrets.log"], 0, {"avoid": (TOKEN,)}),
            ("explain-two-files", [o, "kv.log"], 2, {})):
        cli(cid, ["explain", *argv], rc, **kw)
    cli("explain-stdin-tty-none", ["explain", "-"], 2, stdin="/dev/null")
    cli("explain-dash-dash", ["explain", "--", "-"], 2, stdin="/dev/null")

    # -- plan (rows 48-165, 363-366) --
    sets2 = {
        "float-int": "max_model_len=4096.0", "sci-seqs": "max_num_seqs=1e3", "util-neg": "gpu_memory_utilization=-0.5",
        "seqs-neg": "max_num_seqs=-1", "seqs-huge": "max_num_seqs=1000000000000",
        "len-bigint": "max_model_len=99999999999999999999999", "mm-huge": 'limit_mm_per_prompt={"image":1e9}',
        "mm-audio": 'limit_mm_per_prompt={"audio":1}', "mm-str": 'limit_mm_per_prompt={"image":"one"}',
        "mm-negframes": 'limit_mm_per_prompt={"video":{"count":1,"num_frames":-8}}', "mm-null": "limit_mm_per_prompt=null",
        "kvdtype-bogus": "kv_cache_dtype=fp4", "kvdtype-int8": "kv_cache_dtype=int8", "eager-maybe": "enforce_eager=maybe",
        "eager-2": "enforce_eager=2", "eager-yes": "enforce_eager=yes", "env-2": "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=2",
        "tp-0": "tensor_parallel_size=0", "tp-3": "tensor_parallel_size=3", "tp-1000": "tensor_parallel_size=1000",
        "block-0": "block_size=0", "block-7": "block_size=7", "mbt-0": "max_num_batched_tokens=0",
        "slices-0": 'mm_processor_kwargs={"max_slice_nums":0}', "slices-str": 'mm_processor_kwargs={"max_slice_nums":"nine"}',
        "mmkw-list": "mm_processor_kwargs=[1,2]", "offload-neg": "cpu_offload_gb=-1", "kvbytes-neg": "kv_cache_memory_bytes=-1",
        "cyrillic-key": "max_model_lеn=4096", "underscore": "max_model_len=4_096", "hex": "max_model_len=0x1000",
        "quoted-num": 'max_model_len="4096"', "empty-value": "max_model_len=", "util-str-json": 'gpu_memory_utilization="0.9"',
        "util-exact-1": "gpu_memory_utilization=1.0000001", "swap-neg": "swap_space=-4", "load-format": "load_format=bogus",
        "trust-str": "trust_remote_code=1", "long-value": "max_model_len=" + "9" * 5000,
    }
    for cid, item in sets2.items():  # block_size=7: vLLM 0.32's CacheConfig takes any block_size > 0 (config/cache.py:74)
        cli(f"plan-set-{cid}", ["plan", "--set", item], (0, 2) if cid == "block-7" else 2)
    for cid, argv in (("plan-set-skip-old", ["--vllm", "0.6.3", "--set", "skip_mm_profiling=true"]),
                      ("plan-set-auto-old", ["--vllm", "0.6.3", "--set", "max_model_len=auto"]),
                      ("plan-set-mm-old-version", ["--vllm", "0.6.3", "--set",
                                                   'limit_mm_per_prompt={"video":{"count":1,"num_frames":8}}']),
                      ("plan-set-dup-key", ["--set", "max_model_len=4096", "--set", "max_model_len=8192"]),
                      ("plan-set-bf16-v100", ["--card", "v100-16", "--set", "dtype=bfloat16"]),
                      ("plan-set-bf16-t4", ["--card", "t4", "--vllm", "0.6.3", "--set", "dtype=bfloat16"]),
                      ("plan-vllm-future-minor", ["--vllm", "0.35.0"]), ("plan-vllm-1.0", ["--vllm", "1.0.0"]),
                      ("plan-vllm-empty", ["--vllm", ""]), ("plan-vllm-comma", ["--vllm", ","]),
                      ("plan-vllm-all-and-one", ["--vllm", "all,0.6.3"]), ("plan-vllm-dup", ["--vllm", "0.6.3,0.6.3"]),
                      ("plan-card-empty", ["--card", ""]), ("plan-card-dup", ["--card", "3090,3090"]),
                      ("plan-card-label", ["--card", "RTX 3090"]), ("plan-card-cpu-in-list", ["--card", "cpu,3090"]),
                      ("plan-fit-bogus", ["--fit", "bogus"]), ("plan-fit-same-twice", ["--fit", "max_model_len,max_model_len"]),
                      ("plan-fit-empty", ["--fit", ""]), ("plan-fit-comma", ["--fit", ","]),
                      ("plan-fit-three", ["--fit", "max_model_len,max_num_seqs,max_num_batched_tokens"]),
                      ("plan-fit-contradict-set", ["--fit", "max_model_len", "--set", "max_model_len=4096"]),
                      ("plan-fleet-format-md", ["--card", "3090,4090", "--format", "md"]),
                      ("plan-fit-calibration-missing", ["--fit", "max_model_len", "--calibration", "nope.toml"]),
                      ("plan-fleet-calibration-missing", ["--card", "all", "--calibration", "nope.toml"]),
                      ("plan-fleet-refused-settings", ["--card", "all", "--set", "max_model_len=1000000"]),
                      ("plan-fleet-mbt-2048", ["--card", "3090,4090", "--vllm", "0.6.3", "--set", "max_model_len=4096",
                                               "--set", "max_num_batched_tokens=2048", "--set", "max_num_seqs=8"]),
                      ("plan-entrypoint-upper", ["--entrypoint", "SERVE"]), ("plan-model-neg", ["--model", "model-neg"]),
                      ("plan-model-quant-bad", ["--model", "model-quant"]), ("plan-model-symlink-loop", ["--model", "loop1"]),
                      ("plan-model-file", ["--model", "oom.log"]),
                      ("plan-out-dev-full", ["--out", "/dev/full"]), ("plan-json-md", ["--json", "--format", "md"]),
                      ("plan-calibration-other-toml", ["--calibration", "cards-typo.toml"]),
                      ("plan-cards-dir", ["--cards", ".", "--card", "mine"])):
        cli(cid, ["plan", *argv], 2, says=("bfloat16",) if "bf16" in cid else ())
    for cid, argv, says in (("plan-set-util-tiny", ["--set", "gpu_memory_utilization=0.0001"], ("no_kv_cache",)),
                            ("plan-set-spaces", ["--set", " max_model_len = 4096"], ()),
                            ("plan-vllm-post", ["--vllm", "0.6.3.post1"], ()), ("plan-vllm-rc", ["--vllm", "0.6.3rc1"], ()),
                            ("plan-vllm-v-prefix", ["--vllm", "v0.6.3"], ()), ("plan-vllm-two-part", ["--vllm", "0.6"], ()),
                            ("plan-vllm-future-patch", ["--vllm", "0.33.99"], ()),
                            ("plan-vllm-double-comma", ["--vllm", "0.6.3,,0.8.4"], ()),
                            ("plan-vllm-dev", ["--vllm", "0.6.4.dev123+gabc"], ()),
                            ("plan-card-trailing-comma", ["--card", "3090,"], ()), ("plan-card-upper", ["--card", "ALL"], ()),
                            ("plan-card-space", ["--card", " 3090"], ()), ("plan-card-cpu-md", ["--card", "cpu", "--format", "md"], ()),
                            ("plan-fit-util-ladder", ["--fit", "gpu_memory_utilization,max_model_len"], ()),
                            ("plan-fit-card-all-json", ["--fit", "max_model_len", "--card", "all", "--json"], ()),
                            ("plan-fit-format-md", ["--fit", "max_model_len", "--format", "md"], ("# vLLM start-up",)),
                            ("plan-fit-refused-settings", ["--vllm", "0.6.3", "--fit", "max_num_seqs", "--set",
                                                           "max_num_batched_tokens=16", "--set", "max_model_len=16"],
                             ("largest max_num_seqs that fits: 16",)),
                            ("plan-fit-mbt-2048", ["--vllm", "0.6.3", "--fit", "max_model_len", "--set",
                                                   "max_num_batched_tokens=2048", "--set", "max_num_seqs=8"],
                             ("largest max_model_len that fits: 2,048",)),
                            ("plan-fit-calibration-shipped", ["--card", "3090", "--vllm", "0.6.3", "--fit",
                                                              "max_model_len", "--calibration", "shipped"],
                             ("coefficients: field-cases",)),
                            ("plan-model-llama", ["--model", "model-llama"], ()),
                            ("plan-model-huge", ["--model", "model-huge"], ()),
                            ("plan-model-case", ["--model", "MiniCPM-V-2_6"], ()),
                            ("plan-model-kit-prefix", ["--model", "kit:minicpm-v-2_6"], ()),
                            ("plan-cards-override-3090", ["--cards", "cards-override-3090.toml", "--card", "3090"], ()),
                            ("plan-cards-unicode", ["--cards", "cards-unicode.toml", "--card", "カード"], ())):
        cli(cid, ["plan", *argv], 0, says=says)
    # a hub id: main plans it from the hub's headers now (issue 22); offline it is one line
    cli("plan-model-hubid", ["plan", "--model", "Qwen/Qwen2-VL-7B-Instruct"], (0, 2), timeout=120)
    cli("plan-set-kvbytes-huge", ["plan", "--set", "kv_cache_memory_bytes=1000000000000000"], (0, 2),
        avoid=("kv_cache_memory_bytes=250000114188288",))
    cli("plan-fit-out", ["plan", "--fit", "max_model_len", "--out", "fit-out.txt"], 0, creates="fit-out.txt")
    cli("plan-fleet-out", ["plan", "--card", "all", "--out", "fleet-out.txt"], 0, creates="fleet-out.txt")
    cli("plan-stdout-dev-full", ["plan"], 1, stdout="/dev/full", says=("standard output",))
    cli("plan-fleet-stdout-dev-full", ["plan", "--card", "all"], 1, stdout="/dev/full")
    for cid in ("inf", "nan", "huge", "typo", "all", "cpu", "comma", "noname", "wrongtop", "headroom-big", "bool", "dup",
                "binary"):
        card = {"all": "all", "cpu": "cpu", "comma": "a,b"}.get(cid, "mine")
        cli(f"plan-cards-{cid}", ["plan", "--cards", f"cards-{cid}.toml", "--card", card], 2)
    cli("plan-cards-empty", ["plan", "--cards", "cards-empty.toml"], 2)
    cli("plan-cards-all-with-file", ["plan", "--cards", "cards-typo.toml", "--card", "all"], 2)

    # -- report (rows 166-208, 360) --
    for cid, fmt, rc, kw in (
            ("dup", "md", 2, {}), ("dup-conflict", "md", 2, {}), ("reordered", "md", 0, {}), ("crlf", "md", 0, {}),
            ("bom", "md", (0, 2), {}), ("nan", "json", 2, {}), ("inf", "md,json", 2, {}), ("negative", "md", 2, {}),
            ("huge", "all", 0, {}), ("traverse-id", "all", 0, {"absent": "**/escape.png"}), ("long-id", "all", 0, {}),
            ("md-inject-id", "md,html", 0, {}), ("chart-collide", "all", 0, {}), ("unicode-id", "all", 0, {}),
            ("schema999", "md", 2, {}), ("log-abs", "md", 0, {"avoid": ("root:x:0",)}),
            ("log-rel-escape", "md", 0, {"avoid": (SECRET,)}), ("timeline-garbage", "all", 0, {}),
            ("bad-outcome", "all", 2, {}), ("no-outcome", "all", 0, {}), ("settings-str", "all", 2, {}),
            ("machine-list", "all", (0, 2), {}), ("mixed-card", "md", 2, {}), ("blank-middle", "md", 0, {}),
            ("corrupt-middle", "md", 2, {}), ("many-fail", "md,json", 0, {"timeout": 240})):
        cli(f"report-{cid}", ["report", f"runs/{cid}", "--format", fmt, "--out", f"out/{cid}"], rc,
            **{"timeout": 180, **kw})
    for cid, argv, rc, kw in (
            ("report-out-dev-full", ["runs/base", "--format", "md", "--out", "/dev/full"], 2, {"avoid": ("File exists",)}),
            ("report-format-empty-item", ["runs/base", "--format", "md,,json", "--out", "out/fe"], 0, {}),
            ("report-format-upper", ["runs/base", "--format", "MD", "--out", "out/fu"], 2, {}),
            ("report-format-all-md", ["runs/base", "--format", "all,md", "--out", "out/fam"], 0, {"timeout": 180}),
            ("report-format-empty", ["runs/base", "--format", "", "--out", "out/fempty"], 2, {}),
            ("report-print-json", ["runs/base", "--format", "json", "--print", "--out", "out/pj"], 0, {}),
            ("report-same-run-twice", ["runs/base", "runs/base", "--out", "out/twice"], 2, {}),
            ("report-cross-html", ["runs/base", "runs/reordered", "--format", "html", "--out", "out/xh"], 2, {}),
            ("report-cross-png-only", ["runs/base", "runs/reordered", "--format", "png", "--out", "out/xp"], 2, {}),
            ("report-cross-one-missing", ["runs/base", "runs/nope", "--out", "out/xm"], 2, {}),
            ("report-symlink-loop", ["loop1"], 2, {}), ("report-sparse-2g", ["runs/sparse", "--format", "md"], 2, {}),
            ("report-results-dir-file", ["runs/isdir"], 2, {}),
            ("report-stdout-dev-full", ["runs/base", "--format", "md", "--out", "out/sdf", "--print"], 1,
             {"stdout": "/dev/full"}),
            ("report-cross-card-str", ["runs/card-str-a", "runs/card-str-b", "--out", "out/xstr"], 0, {"timeout": 120})):
        cli(cid, ["report", *argv], rc, **kw)

    # -- compare (rows 209-236, 361) --
    for cid, old, new, rc, extra, kw in (
            ("symlink-same", "cmp/old.jsonl", "cmp-old-link.jsonl", 0, [], {"says": ("same file",)}),
            ("other-model", "cmp/old.jsonl", "cmp/other-model.jsonl", 2, [], {}),
            ("other-card", "cmp/old.jsonl", "cmp/other-card.jsonl", 2, [], {}),
            ("peak-up-10", "cmp/old.jsonl", "cmp/peak-up-10.jsonl", 1, [], {"says": ("REGRESSION",)}),
            ("dup-new", "cmp/old.jsonl", "cmp/dup-new.jsonl", 2, [], {}),
            ("dup-new-rev", "cmp/old.jsonl", "cmp/dup-new-rev.jsonl", 2, [], {}),
            ("peak-null", "cmp/old.jsonl", "cmp/peak-null.jsonl", 2, [], {}),
            ("kv-zero-old", "cmp/kv-zero-old.jsonl", "cmp/old.jsonl", 0, [], {}),
            ("outcome-missing", "cmp/old.jsonl", "cmp/outcome-missing.jsonl", 2, [], {}),
            ("id-int", "cmp/old.jsonl", "cmp/id-int.jsonl", 2, [], {}),
            ("empty-ids", "cmp/old.jsonl", "cmp/empty-ids.jsonl", (1, 2), [], {}),
            ("baseline-json", "cmp/baseline.json", "cmp/old.jsonl", 0, [], {}),
            ("baseline-other-model", "cmp/baseline-other-model.json", "cmp/old.jsonl", 2, [], {}),
            ("baseline-empty", "cmp/baseline-empty.json", "cmp/old.jsonl", 2, [], {}),
            ("baseline-schema99", "cmp/baseline-schema99.json", "cmp/old.jsonl", 2, [], {}),
            ("spec-dup-key", "cmp/old.jsonl", "cmp/peak-up-10.jsonl", 2, ["--fail-on-regression", "peak:5%,peak:20%"], {}),
            ("spec-upper", "cmp/old.jsonl", "cmp/peak-up-10.jsonl", 2, ["--fail-on-regression", "PEAK:5%"], {}),
            ("spec-space", "cmp/old.jsonl", "cmp/peak-up-10.jsonl", 1, ["--fail-on-regression", "peak: 5%"], {}),
            ("spec-zero", "cmp/old.jsonl", "cmp/old.jsonl", 0, ["--fail-on-regression", "peak:0%"], {}),
            ("spec-all-off", "cmp/old.jsonl", "cmp/peak-up-10.jsonl", 0,
             ["--fail-on-regression", "peak:off,kv_tokens:off,startup:off"], {}),
            ("spec-nan", "cmp/old.jsonl", "cmp/peak-up-10.jsonl", 2, ["--fail-on-regression", "peak:nan%"], {}),
            ("spec-inf", "cmp/old.jsonl", "cmp/peak-up-10.jsonl", 2, ["--fail-on-regression", "peak:inf"], {}),
            ("spec-empty", "cmp/old.jsonl", "cmp/peak-up-10.jsonl", 1, ["--fail-on-regression", ""], {}),
            ("spec-fraction-gt1", "cmp/old.jsonl", "cmp/peak-up-10.jsonl", 2, ["--fail-on-regression", "peak:2"], {}),
            ("spec-trailing-comma", "cmp/old.jsonl", "cmp/peak-up-10.jsonl", 1, ["--fail-on-regression", "peak:5%,"], {}),
            ("json-out", "cmp/old.jsonl", "cmp/peak-up-10.jsonl", 1, ["--json"], {}),
            ("dirs-empty", "e1", "e2", 2, [], {}),
            ("stdout-dev-full", "cmp/old.jsonl", "cmp/peak-up-10.jsonl", 1, [], {"stdout": "/dev/full"}),
            ("sparse-2g", "cmp-sparse", "cmp/old.jsonl", 2, [], {"timeout": 60})):
        cli(f"compare-{cid}", ["compare", old, new, *extra], rc, **kw)

    # -- calibrate, model-kit, env, selfcheck, cli (rows 315-351, 362) --
    inputs = str(ROOT / "tests" / "data" / "calibration" / "field-inputs.toml")
    for cid, argv, rc, kw in (
            ("calibrate-none", [], 2, {}), ("calibrate-missing", ["nope.jsonl"], 2, {}),
            ("calibrate-empty-toml", ["cards-empty.toml"], 2, {}), ("calibrate-sample-no-fields", ["fit-bad.toml"], 2, {}),
            ("calibrate-sample-badtype", ["fit-badtype.toml"], 2, {}),
            ("calibrate-log-no-breakdown", ["kv.log", "--model", "minicpm-v-2_6", "--card", "3090", "--vllm", "0.6.3"],
             2, {}),
            ("calibrate-log-bad-card", ["oom.log", "--model", "minicpm-v-2_6", "--card", "bogus"], 2, {}),
            ("calibrate-out-dev-full", [inputs, "--out", "/dev/full"], 2, {}),
            ("calibrate-markdown-dir", [inputs, "--markdown", "."], 2, {}),
            ("calibrate-same-twice", [inputs, inputs, "--out", "twice.toml"], 2, {}),
            ("calibrate-name-inject", [inputs, "--name", 'a"b\nc]', "--out", "inj.toml"], 0, {}),
            ("calibrate-binary", ["binary-x.log", "--model", "minicpm-v-2_6", "--card", "3090", "--vllm", "0.6.3"], 2, {}),
            ("calibrate-jsonl-name", [str(ROOT / "tests" / "data" / "results" / "sweep-a10.jsonl")], (0, 2),
             {"avoid": ("needs --model and --card and --vllm",)})):
        cli(cid, ["calibrate", *argv], rc, timeout=120, **kw)
    for cid, cal in (("cal-use-bad", "cal-bad.toml"), ("cal-use-huge", "cal-huge.toml"),
                     ("cal-use-unknown", "cal-unknown.toml"), ("cal-use-nan", "cal-nan.toml")):
        cli(cid, ["plan", "--calibration", cal], 2)
    for cid, argv, rc in (
            ("modelkit-unicode-dir", ["キット ✓", "--size", "tiny"], 0), ("modelkit-long-component", ["k" * 300], 2),
            ("modelkit-dev-full", ["/dev/full"], 2), ("modelkit-symlink-loop", ["loop1"], 2),
            ("modelkit-force-over-file", ["kfile", "--force"], 2),
            ("modelkit-force-nonkit-dir", ["precious", "--force", "--size", "tiny"], 0),
            ("modelkit-random-tiny", ["krt", "--size", "tiny", "--weights", "random"], 0),
            ("modelkit-case-model", ["kc", "--size", "tiny"], 0)):
        cli(cid, ["model-kit", "MiniCPM-V-2_6" if cid == "modelkit-case-model" else "minicpm-v-2_6", *argv], rc,
            timeout=120)
    cli("modelkit-qwen", ["model-kit", "qwen2.5-vl-7b", "kq"], 2)
    cli("modelkit-size-upper", ["model-kit", "minicpm-v-2_6", "ku", "--size", "TINY"], 2)
    cli("env-json-notorch", ["env", "--json", "--no-torch"], 0)
    cli("env-broken-torch", ["env"], 0, env={"PYTHONPATH": "{sandbox}/fake-torch"})
    cli("env-cuda-visible-bogus", ["env"], 0, env={"CUDA_VISIBLE_DEVICES": "abc", "HF_TOKEN": TOKEN}, avoid=(TOKEN,))
    cli("env-extra-arg", ["env", "extra"], 2)
    cli("selfcheck-bogus-card", ["selfcheck", "--card", "bogus"], 2, says=("unknown card",))
    for cid, argv in (("selfcheck-cpu", ["--card", "cpu"]), ("selfcheck-all", ["--card", "all"]), ("selfcheck-no-card", [])):
        cli(cid, ["selfcheck", *argv], 2)
    cli("cli-help-unknown-cmd", ["hlep"], 2)
    cli("cli-version", ["--version"], 0, says=("vllm-memcheck",))

    # -- the pytest plugin (rows 237-314), in the stand-in project --
    base = ["--card=cpu", "--matrix=m.toml"]
    plugin = [
        ("matrix-model-int", ["--card=cpu", "--matrix=matrix-model-int.toml"], 4, {}),
        ("matrix-dup-axis", ["--card=cpu", "--matrix=matrix-dup-axis.toml"], 4, {}),
        ("matrix-float-collide", ["--card=cpu", "--matrix=matrix-float-collide.toml"], 4, {}),
        ("matrix-long-name", ["--card=cpu", "--matrix=matrix-long-name.toml"], 0, {}),
        ("matrix-slash-name", ["--card=cpu", "--matrix=matrix-slash-name.toml"], 0, {}),
        ("matrix-dotdot-name", ["--card=cpu", "--matrix=matrix-dotdot-name.toml", "--report-dir=rd-dotdot"], 0,
         {"absent": "**/escaped*"}),
        ("matrix-empty-name", ["--card=cpu", "--matrix=matrix-empty-name.toml"], 4, {}),
        ("matrix-unicode-name", ["--card=cpu", "--matrix=matrix-unicode-name.toml"], 0, {}),
        ("matrix-threshold-typo", ["--card=cpu", "--matrix=matrix-threshold-typo-card.toml"], 4, {}),
        ("matrix-threshold-tiny", ["--card=cpu", "--matrix=matrix-threshold-tiny.toml"], 1, {}),
        ("matrix-axis-str", ["--card=cpu", "--matrix=matrix-axis-str.toml"], 4, {}),
        ("matrix-axis-mixed", ["--card=cpu", "--matrix=matrix-axis-mixed.toml"], 4, {}),
        ("matrix-huge-product", ["--card=cpu", "--matrix=matrix-huge-product.toml", "--collect-only"], 0,
         {"timeout": 300}),
        ("matrix-expect-table-bad", ["--card=cpu", "--matrix=matrix-expect-table-bad.toml"], 4, {}),
        ("matrix-request-str", ["--card=cpu", "--matrix=matrix-request-str.toml"], 4, {}),
        ("matrix-description-int", ["--card=cpu", "--matrix=matrix-description-int.toml"], 4, {}),
        ("matrix-defaults-conflict", ["--card=cpu", "--matrix=matrix-defaults-conflict.toml"], 0, {}),
        ("matrix-scenario-equals-axis", ["--card=cpu", "--matrix=matrix-scenario-equals-axis-id.toml"], 4, {}),
        ("matrix-bom", ["--card=cpu", "--matrix=matrix-bom.toml"], 0, {}),
        ("matrix-binary", ["--card=cpu", "--matrix=matrix-binary.toml"], 4, {}),
        ("matrix-dir", ["--card=cpu", "--matrix=."], 4, {}), ("matrix-devnull", ["--card=cpu", "--matrix=/dev/null"], 4, {}),
        ("matrix-vllm-refuses", ["--card=cpu", "--matrix=matrix-vllm-refuses.toml", "-rs"], 0, {"says": ("refused",)}),
        ("matrix-space-syntax", ["--card=cpu", "--matrix", "m.toml"], 0, {}),
        # [cards.cpu] total_gib is how a CPU run gets memory verdicts (estimator's note): the user's own figure
        ("cards-cpu-override", [*base, "--cards=cards-cpu-override.toml"], (0, 1), {}),
        ("cards-inf", ["--card=mine", "--cards=cards-inf.toml", "--matrix=m.toml"], 4, {}),
        ("cards-binary", [*base, "--cards=cards-binary.toml"], 4, {}),
        ("card-empty", ["--card=", "--matrix=m.toml"], 0, {}), ("card-upper", ["--card=CPU", "--matrix=m.toml"], 0, {}),
        ("card-list", ["--card=3090,4090", "--matrix=m.toml"], 4, {}), ("card-all", ["--card=all", "--matrix=m.toml"], 4, {}),
        ("model-upper-kit", [*base, "--model=KIT:tiny-text"], 4, {}), ("model-kit-empty", [*base, "--model=kit:"], 4, {}),
        ("model-empty", [*base, "--model="], 0, {}), ("model-tilde-missing", [*base, "--model=~/nope-model"], 4, {}),
        ("model-file", [*base, "--model=./m.toml"], 4, {"says": ("is a file",)}),
        ("load-format-upper", [*base, "--load-format=DUMMY"], 4, {}),
        ("timeout-tiny", [*base, "--engine-timeout=1e-9"], 4, {}), ("timeout-huge", [*base, "--engine-timeout=1e300"], 0, {}),
        ("timeout-hex", [*base, "--engine-timeout=0x10"], 4, {}),
        ("report-dir-devfull", [*base, "--report-dir=/dev/full"], 4, {}), ("report-dir-empty", [*base, "--report-dir="], 0, {}),
        ("save-baseline-long", [*base, "--save-baseline=" + "b" * 300], 4, {}),
        ("save-baseline-unicode", [*base, "--save-baseline=ベース"], 4, {}),
        ("save-baseline-dotdot", [*base, "--save-baseline=../x"], 4, {}), ("save-baseline-dot", [*base, "--save-baseline=."], 4, {}),
        ("save-and-compare-same", [*base, "--save-baseline=p1", "--compare-baseline=p1", "--baseline-dir=bl-same"], 4, {}),
        ("compare-results-str", [*base, "--compare-baseline=./bl-results-str.json"], 4, {}),
        ("compare-empty-baseline", [*base, "--compare-baseline=./bl-empty.json"], 4, {}),
        ("compare-null-baseline", [*base, "--compare-baseline=./bl-null.json"], 4, {}),
        ("compare-dir", [*base, "--compare-baseline=./rd-dir/"], 4, {"says": ("directory",)}),
        ("if-missing-alone", [*base, "--save-baseline-if-missing"], 4, {}),
        ("fail-spec-nocompare", [*base, "--fail-on-regression=bogus"], 4, {}),
        ("fail-spec-empty", [*base, "--compare-baseline=./bl-empty.json", "--fail-on-regression="], 4, {}),
        ("calibration-missing", [*base, "--calibration=nope.toml"], 4, {}),
        ("calibration-shipped", [*base, "--calibration=shipped"], 0, {}),
        ("gpus-abc", [*base, "--gpus=abc"], 4, {}), ("gpus-neg", [*base, "--gpus=-1"], 4, {}),
        ("gpus-dup", [*base, "--gpus=0,0"], 4, {}), ("gpus-cpu", [*base, "--gpus=0", "-n", "2"], 0, {}),
        ("search-bogus", [*base, "--search=gpu_memory_utilization"], 4, {}),
        ("search-range-bad", [*base, "--search=max_model_len", "--search-range=abc"], 4, {}),
        ("search-range-inverted", [*base, "--search=max_model_len", "--search-range=4096:512"], 4, {}),
        ("search-res-zero", [*base, "--search=max_model_len", "--search-range=256:512", "--search-resolution=0"], 4, {}),
        ("search-res-text", [*base, "--search=max_model_len", "--search-range=256:512", "--search-resolution=big"], 4, {}),
        ("search-range-nosearch", [*base, "--search-range=abc"], 4, {}),
        ("search-res-nosearch", [*base, "--search-resolution=-5"], 4, {}),
        ("search-ok", [*base, "--search=max_model_len", "--search-range=256:512"], 0, {}),
        ("resume-latest-missing-dir", [*base, "--resume"], 0, {}),
        ("resume-latest-dotdot", [*base, "--resume"], 0, {}),
        ("resume-dup-lines", [*base, "--resume"], (1, 4), {"says": ("more than one record",)}),
        ("resume-other-matrix", [*base, "--resume"], 4, {}),
        ("ini-bad-card", ["--matrix=m.toml"], 4, {}), ("ini-resume-str", ["--card=cpu", "--matrix=m.toml"], 4, {}),
        ("k-nothing", [*base, "-k", "nothing_matches"], 5, {}), ("xdist-4-on-2core", [*base, "-n", "4"], 0, {}),
    ]
    for cid, argv, rc, kw in plugin:
        c.append(Case(f"n3-plugin-{cid}", list(argv), tuple(rc) if isinstance(rc, tuple) else (rc,), PYTEST,
                      timeout=kw.pop("timeout", 180.0), **kw))
    return c
