"""`model-kit minicpm-v-2_6|minicpm-v-4_5 OUT_DIR [--size real|tiny] [--weights none|random] [--force]`: write the
checkpoint directory (config, image processor, processor, tokenizer, optional random weights) vLLM needs for
MiniCPM-V-2_6 or MiniCPM-V-4_5 (config.json version 4.5: vLLM's MiniCPMV4_5, a Qwen3 LLM).
"""

from __future__ import annotations

from diagnostics.errors import UsageError, one_of

HELP = "write a MiniCPM-V-2_6 or -4_5 checkpoint directory (real shapes or tiny) for load_format=dummy"

MODELS = ("minicpm-v-2_6", "openbmb/MiniCPM-V-2_6", "minicpm-v-4_5", "openbmb/MiniCPM-V-4_5")


def add_arguments(parser) -> None:
    parser.add_argument("model", help="minicpm-v-2_6 or minicpm-v-4_5 (or their hub ids)")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="directory to write (created; must be empty unless --force)")
    parser.add_argument("--size", default="real", metavar="{real,tiny}", help="real (Qwen2-7B + SigLIP-400M shapes) or tiny (CPU-sized)")
    parser.add_argument("--weights", default="none", metavar="{none,random}",
                        help="none (start with load_format=dummy) or random (tiny only: model.safetensors)")
    parser.add_argument("--force", action="store_true", help="overwrite kit files in a non-empty OUT_DIR")


def run(args) -> int:
    if args.model.lower() not in {m.lower() for m in MODELS}:
        raise one_of("model", args.model, MODELS)
    if not args.out_dir or not args.out_dir.strip():
        raise UsageError("OUT_DIR is empty; give the directory to write the kit into")
    from diagnostics.kit import build_minicpmv26

    try:
        version = "4.5" if "4_5" in args.model else "2.6"
        out = build_minicpmv26(args.out_dir, size=args.size, weights=args.weights, force=args.force, version=version)
    except ModuleNotFoundError as err:  # an optional library the kit writer needs (tokenizers, safetensors, numpy)
        missing = (err.name or str(err)).split(".")[0]
        raise UsageError(f"model-kit needs the Python package {missing!r}, which is not installed here; "
                         f"`pip install {missing}`, or reinstall with scripts/install.sh "
                         "(every flavour brings it)") from None
    load = "load_format='dummy'" if args.weights == "none" else "its random weights"
    print(f"wrote MiniCPM-V-{version.replace('.', '_')} kit ({args.size}, weights {args.weights}) to {out}")
    print(f"start it with: LLM(model={str(out)!r}, trust_remote_code=True, ...) using {load}")
    return 0
