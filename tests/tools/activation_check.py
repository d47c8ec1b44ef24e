"""The profile run's LLM pass measured on fake tensors (diagnostics/vllm_exact/activation.py), two ways.

  python tests/tools/activation_check.py field
      Every field case that printed an activation figure (tests/data/calibration/field-inputs.toml): the figure,
      plan's formula route refitted without the case (leave-one-out, as docs/accuracy.md), and the same route with
      the LLM pass replaced by the fake-tensor forward (no coefficient of its own; the encoder and sampler branches
      keep their leave-one-out coefficients). Prints a Markdown table.

  python tests/tools/activation_check.py cuda CONFIG_DIR TOKENS [--tp N]
      The fake-tensor estimate beside the same transformers module's forward on CUDA (random bf16 weights, two
      decoder layers): torch.cuda.max_memory_allocated minus the parameters. Without CUDA the CUDA half is skipped
      with one line saying so.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from diagnostics.vllm_exact.activation import llm_pass_peak, tp_config

INPUTS = ROOT / "tests" / "data" / "calibration" / "field-inputs.toml"
GiB = 1 << 30


def config_of(model) -> dict:
    return json.loads(Path(model.source).read_text())


def fake_route(parts: dict, coef, fake_llm: float) -> float:
    """plan's activation peak (bytes) with the LLM pass replaced: predict/calibrate.py `_branch`'s max."""
    enc = (coef.encoder_scale_eager if parts["eager"] else coef.encoder_scale_linear) * parts["encoder_raw_bytes"]
    samp = parts["hidden_bytes"] + coef.sampler_bytes_per_logit * parts["sampler_logits"]
    return max(enc, parts["encoder_outputs_bytes"] + max(fake_llm, samp))


def field() -> int:
    from diagnostics.commands.calibrate import samples_from_inputs
    from diagnostics.predict import calibrate as cal

    samples, _ = samples_from_inputs(INPUTS)
    print("| case | vLLM | LLM pass tokens x TP | printed | formula, leave-one-out (error) | fake-tensor LLM pass | "
          "fake-tensor route (error) |")
    print("|---|---|---|---|---|---|---|")
    for i, s in enumerate(samples):
        figure = next((f for f in cal.ACTIVATION_FIGURES if isinstance(s.printed.get(f), (int, float))), None)
        if s.model is None or figure is None:
            continue
        coef = cal._for(s, cal.calibration_of(cal.fit(samples[:i] + samples[i + 1:]), []))
        p = cal.replan(s, coef)
        parts, tokens = p.profile["parts"], p.settings["max_num_batched_tokens"]
        weights = p.components["weights"].value_gib if figure == "peak_torch_gib" else 0.0
        formula = cal.predicted(s, coef)[figure]
        fake = llm_pass_peak(config_of(s.model), tokens, parts["tensor_parallel_size"])["activation_bytes"]
        route = fake_route(parts, coef, fake) / GiB + weights
        printed = s.printed[figure]
        print(f"| {s.label} ({figure}) | {s.version} | {tokens:,} x {parts['tensor_parallel_size']} | {printed:.2f} | "
              f"{formula:.2f} ({(formula - printed) / printed:+.1%}) | {fake / GiB:.3f} | "
              f"{route:.2f} ({(route - printed) / printed:+.1%}) |")
    return 0


def cuda(config_dir: str, tokens: int, tp: int) -> int:
    import torch

    cfg = json.loads((Path(config_dir) / "config.json").read_text())
    fake = llm_pass_peak(cfg, tokens, tp)
    print(f"fake-tensor estimate ({fake['model_class']}, {tokens} tokens, TP {tp}): "
          f"{fake['activation_bytes'] / GiB:.3f} GiB activation ({fake['seconds']} s)")
    if not torch.cuda.is_available():
        print("CUDA half skipped: torch.cuda.is_available() is False (no GPU here)")
        return 0
    from transformers import AutoConfig, AutoModelForCausalLM

    text = tp_config(cfg, tp)
    config = AutoConfig.for_model(text.pop("model_type", "llama"), **text)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
    ids = torch.zeros((1, tokens), dtype=torch.long, device="cuda")
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        model(input_ids=ids, logits_to_keep=1, use_cache=False)
    torch.cuda.synchronize()
    measured = torch.cuda.max_memory_allocated() - base
    print(f"CUDA ({torch.cuda.get_device_name()}): max_memory_allocated - before = {measured / GiB:.3f} GiB; "
          f"fake / CUDA = {fake['activation_bytes'] / measured:.3f}")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["field"]:
        return field()
    if argv[:1] == ["cuda"] and len(argv) >= 3:
        tp = int(argv[argv.index("--tp") + 1]) if "--tp" in argv else 1
        return cuda(argv[1], int(argv[2]), tp)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
