"""Pipeline parallelism (`pipeline_parallel_size`): which decoder layers, embeddings and head each stage builds, as
vLLM builds them, so that weights, activations and KV can be planned per stage.

* Layers per stage: vLLM's `get_pp_indices` (distributed/utils.py:126-168, 0.32; VLLM_PP_LAYER_PARTITION, a comma
  list of layer counts, overrides it). From 0.8.0 an uneven remainder goes one layer each to the stages before the
  last, last-but-one first (`partitions[-i] += 1`, utils.py 0.8.0:101-103, unchanged to 0.34:243-245); up to 0.7.0
  the last stage takes it (utils.py 0.7.0:84-89; 0.5.4:83-84). 0.7.1-0.7.3 are not checked: planned as 0.7.0.
  Pipeline parallelism starts in 0.5.1 (0.5.0 config.py:629-631 raises "Pipeline parallelism is not supported yet").
* Embeddings and head: `make_layers` builds PPMissingLayer outside the stage (model_executor/models/utils.py:900-919,
  0.32). Llama/Mistral/Phi-3/Qwen2/Qwen3 build embed_tokens on the first stage (and on the last when the embeddings
  are tied: llama.py:377-388, qwen2.py:366-378), norm and lm_head on the last (llama.py:394-397, :502-517);
  DeepSeek-V2/V3 likewise, untied (deepseek_v2.py:1459-1488, :1917-1925). Qwen2-MoE, Qwen3-MoE, Mixtral, Gemma 2/3,
  InternLM2 and ChatGLM build embed_tokens, norm and lm_head on every stage (qwen3_moe.py:468, :479, :580;
  qwen2_moe.py:372, :388, :462; mixtral.py:316, :336, :406; gemma2.py:259, :270; gemma3.py:300, :313, :392;
  internlm2.py:274, :285, :348; chatglm.py:287, :330, :344). An architecture outside both lists is planned with the
  first/last rule and called an estimate.
* The sampler of the profile run runs on the last stage only (v1/worker/gpu_model_runner.py:6196-6200, 0.32).
* The KV pool: every worker sizes its own blocks from its own free memory and layers, then all take the fewest
  (V1: v1/core/kv_cache_utils.py:2662-2677 `get_kv_cache_configs`, 0.32; `unify_kv_cache_configs` 0.9.2:966-1000;
  V0: executor/distributed_gpu_executor.py:44 `min(b[0] for b in num_blocks)`, 0.6.0). So the plan is the worst
  stage's: the one with the fewest KV blocks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from diagnostics.errors import UsageError
from diagnostics.versions import Version, parse_version

PP_SINCE = Version(0, 5, 1)
SPREAD_SINCE = Version(0, 8, 0)
WHOLE_MODEL_CHECK = (Version(0, 14, 0), Version(0, 17, 0))  # see whole_model_check_tokens
ENDS_ON_THEIR_STAGE = frozenset({"LlamaForCausalLM", "MistralForCausalLM", "Phi3ForCausalLM", "Qwen2ForCausalLM",
                                 "Qwen3ForCausalLM", "DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM"})
ENDS_ON_EVERY_STAGE = frozenset({"Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM", "MixtralForCausalLM",
                                 "Gemma2ForCausalLM", "Gemma3ForCausalLM", "InternLM2ForCausalLM", "ChatGLMModel",
                                 "ChatGLMForConditionalGeneration"})
_UNTIED_ALWAYS = frozenset({"DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM"})  # never tie lm_head (deepseek_v2.py)


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: decoder layers [start, end), whether it builds the input embedding (`embed`), lm_head
    (`head`) and the final norm (`final_norm`), and `rule`: "vllm" when vLLM's model file was read for this
    architecture, "assumed" (first/last rule taken for an architecture not read)."""

    index: int
    size: int
    start: int
    end: int
    embed: bool
    head: bool
    final_norm: bool
    rule: str = "vllm"

    @property
    def layers(self) -> int:
        return self.end - self.start

    @property
    def is_last(self) -> bool:
        return self.index == self.size - 1

    def label(self) -> str:
        ends = [n for n, on in (("embeddings", self.embed), ("lm_head", self.head), ("norm", self.final_norm)) if on]
        return (f"stage {self.index} of {self.size}: layers {self.start}-{self.end - 1} ({self.layers})"
                + (f" + {', '.join(ends)}" if ends else ""))


def partition(layers: int, pp: int, version, layer_partition: str | None = None) -> list[int]:
    """Decoder layers per stage, as vLLM `version`'s get_pp_indices splits `layers` over `pp` stages.

    layer_partition: VLLM_PP_LAYER_PARTITION's text ("14,13"). UsageError (one line) when it is not `pp` integers
    summing to `layers`, as vLLM's ValueError (utils.py:142-151, 0.32)."""
    if layer_partition is not None:
        try:
            parts = [int(x) for x in str(layer_partition).split(",")]
        except ValueError:
            raise UsageError(f"setting VLLM_PP_LAYER_PARTITION={layer_partition!r} is invalid; accepted: one layer "
                             f"count per stage, comma-separated ({pp} integers summing to {layers})") from None
        if len(parts) != pp or sum(parts) != layers or min(parts) < 0:
            raise UsageError(f"setting VLLM_PP_LAYER_PARTITION={layer_partition!r} does not fit; accepted: {pp} "
                             f"non-negative integers summing to num_hidden_layers={layers}")
        return parts
    parts = [layers // pp] * pp
    remaining = layers % pp
    if remaining and parse_version(version) >= SPREAD_SINCE:
        for i in range(2, remaining + 2):
            parts[-i] += 1
    else:
        parts[-1] += remaining
    return parts


def stages(model, pp: int, version, layer_partition: str | None = None) -> list[Stage]:
    """Every stage of `model` (a ModelSpec with a text decoder) split over `pp` stages in vLLM `version`.

    UsageError (one line) for a vision-language model (not modelled), a version before PP, more stages than
    layers, or a bad VLLM_PP_LAYER_PARTITION."""
    v = parse_version(version)
    if v < PP_SINCE:
        raise UsageError(f"setting pipeline_parallel_size={pp} needs vLLM >= {PP_SINCE} (vLLM {v} raises "
                         "'Pipeline parallelism is not supported yet'); accepted here: 1")
    if model.decoder is None or model.vision is not None:
        raise UsageError(f"setting pipeline_parallel_size={pp}: pipeline parallelism is planned for text decoders "
                         f"only, not {model.name}; accepted for it: 1")
    if pp > model.layers:
        raise UsageError(f"setting pipeline_parallel_size={pp} is more than the model's {model.layers} decoder "
                         "layers; accepted: 1 to num_hidden_layers")
    arch = model.decoder.architecture
    every = arch in ENDS_ON_EVERY_STAGE
    rule = "vllm" if every or arch in ENDS_ON_THEIR_STAGE else "assumed"
    tied = bool(model.tie_word_embeddings) and arch not in _UNTIED_ALWAYS
    out, start = [], 0
    for i, n in enumerate(partition(model.layers, pp, v, layer_partition)):
        first, last = i == 0, i == pp - 1
        out.append(Stage(i, pp, start, start + n, embed=every or first or (last and tied),
                         head=(every or last) and not tied, final_norm=every or last, rule=rule))
        start += n
    return out


def stage_model(model, stage: Stage):
    """`model` restricted to the stage's decoder layers (for the KV bytes per token of one worker): layers, layer
    kinds and MoE layer indices of [start, end) only."""
    d = model.decoder
    kinds = d.kinds()[stage.start:stage.end]
    moe = d.moe
    if moe is not None:
        moe = dataclasses.replace(moe, moe_layers=tuple(i - stage.start for i in moe.moe_layers
                                                        if stage.start <= i < stage.end))
    dec = dataclasses.replace(d, layers=stage.layers, layer_kinds=kinds if d.layer_kinds else (), moe=moe)
    return dataclasses.replace(model, layers=stage.layers, decoder=dec)


def whole_model_check_tokens(stage_kv_bytes: list[float], whole_bytes_per_token: float, version) -> int | None:
    """Tokens vLLM 0.14-0.16 counts for its one-request check (and max_model_len=auto) under pipeline parallelism:
    the smallest worker's KV memory (bytes) over the whole model's KV bytes per token, as `min(available_memory)`
    meets the global KV groups (v1/core/kv_cache_utils.py 0.14.0:1503-1521, 0.16.0:1510-1525; vllm#34076). None for
    other versions: 0.13 checks each worker with its own layers (0.12.0:1331-1337), 0.17 projects the groups per
    worker (0.32:2600-2646)."""
    v = parse_version(version)
    if not WHOLE_MODEL_CHECK[0] <= v < WHOLE_MODEL_CHECK[1] or not stage_kv_bytes:
        return None
    return int(min(stage_kv_bytes) // whole_bytes_per_token)
