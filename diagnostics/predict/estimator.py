"""plan(): every term of vLLM's start-up memory arithmetic for a model, a card and a vLLM version.

Pure arithmetic, fast and side-effect free (the explainer calls it for counterfactuals). The KV formulas follow
vllm-memory.md §1; the dummy items follow §3 (`predict.mm_budget`); each term is one function of `predict.terms`
with its coefficients from `predict.coefficients`; the verdict's order of checks is `predict.verdict`.
Every Term keeps a low/high range; `basis` says whether it is exact, derived or an estimate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from diagnostics.cards import Card, get_card
from diagnostics.families import check_version
from diagnostics.errors import UsageError
from diagnostics.gguf_header import gguf_version_check
from diagnostics.models import ModelSpec, get_model
from diagnostics.outcomes import MEMORY_TERMS
from diagnostics.predict import mm_budget, pipeline
from diagnostics.predict.architectures import text_refusal
from diagnostics.predict.coefficients import DEFAULT, Calibration, Coefficients
from diagnostics.predict.exact import VllmExact, exact_weights_gib
from diagnostics.decoder import HYBRID_KV_SINCE
from diagnostics.predict.layer_notes import layer_kind_notes
from diagnostics.predict.limits import known_limits, mm_guard_notes, setting_notes, startup_blocker
from diagnostics.predict.terms import (KVCache, Term, activation_term, cuda_graph_term, dtype_bytes,
                                       eager_vision_attention, encoder_bytes, encoder_term, kv_block_bytes,
                                       kv_cache_term, largest_graph_batch, llm_pass_bytes, llm_pass_spread,
                                       non_torch_term, sampler_bytes, scaled_encoder_bytes, weights_term)
from diagnostics.predict.verdict import StartupTerms, null_block_tokens, verdict as judge_verdict
from diagnostics.settings import KV_CACHE_DTYPES, dated_default, engine_choice, resolve
from diagnostics.units import GiB, fmt_gib
from diagnostics.versions import Version, default_version, engine as engine_of, family as family_of, parse_version

# V1's hybrid KV cache manager: sliding-window layers keep only their window. 0.9.0 still turns every sliding layer
# of a mixed model into full attention (v1/core/kv_cache_utils.py 0.9.0:660-693); 0.9.2 has the manager
# (kv_cache_utils.py 0.9.2:744-786); 0.9.1 not checked.
# The component names of `Plan.components`, in the order vLLM's start-up meets them.
COMPONENTS = tuple(MEMORY_TERMS)


@dataclass
class Plan:
    """The prediction for one (model, card, version, entry point, settings). GiB throughout.

    `settings` is every setting resolved the way that version does (defaults included); `overrides` is exactly
    what the user set (checked, before defaults), so counterfactuals change one thing and keep the rest.
    """

    verdict: str
    vllm_version: str
    engine: str
    family: str
    card: Card
    model: ModelSpec
    entrypoint: str
    settings: dict
    components: dict[str, Term]
    profile: dict
    peak_gib: float
    kv_cache_tokens: int | None
    failing_phase: str | None
    notes: list[str] = field(default_factory=list)
    cuda_context_gib: float = DEFAULT.cuda_context_gib[0]
    overrides: dict = field(default_factory=dict)
    coefficients: Coefficients = DEFAULT
    exact: VllmExact | None = None  # what the installed vLLM's own code gave (predict.exact), if it was asked

    def to_json(self, culprits=None, fix=None) -> dict:
        """The `plan --json` shape (issue #2 §4); with pipeline parallelism also every stage's figures."""
        c = self.components
        return {
            "verdict": self.verdict,
            "vllm_version": self.vllm_version,
            "engine": self.engine,
            "card": {"name": self.card.name, "total_gib": self.card.total_gib},
            "settings": dict(sorted(self.settings.items())),
            "components": {f"{name}_gib": round(c[name].value_gib, 2) for name in COMPONENTS},
            "profile": {k: self.profile[k] for k in
                        ("encoder_items", "encoder_slices", "vit_tokens", "max_num_batched_tokens")},
            "peak_gib": round(self.peak_gib, 2),
            "kv_cache_tokens": self.kv_cache_tokens,
            "culprits": list(culprits or []),
            "fix": dict(fix or {}),
            **({"pipeline_stages": self.profile["pipeline_stages"]} if "pipeline_stages" in self.profile else {}),
        }


@dataclass(frozen=True)
class _Context:
    model: ModelSpec
    card: Card
    v: Version
    eng: str
    fam: str
    settings: dict
    db: int
    tp: int
    coef: Coefficients
    exact: VllmExact | None = None


def plan(model="minicpm-v-2_6", card="3090", version=None, entrypoint="llm", overrides=None,
         coefficients: Coefficients | Calibration | None = None, exact: VllmExact | None = None) -> Plan:
    """Predict every start-up term and the verdict.

    model: a name `models.get_model` knows, a directory with config.json, or a ModelSpec; card: a name or Card;
    version: a vLLM version text (default: the installed one, else the newest known); entrypoint: "llm" | "serve";
    overrides: {setting: value} as the user gave them; coefficients: the estimate coefficients, or a Calibration
    (its group for the card's architecture and the version's family is used); exact: what the installed vLLM's
    own code computed for this model and these settings (diagnostics.vllm_exact), which replaces the weights and
    the KV bytes per token. Pure; raises UsageError for bad input.
    """
    model, card = get_model(model), get_card(card)
    v = parse_version(version or default_version())
    _check_version(model, v)
    given = dict(overrides or {})
    settings = resolve(model, card, v, entrypoint, given)
    fam = family_of(v, settings.get("use_v1"))
    coef = coefficients.for_group(card.arch, fam) if isinstance(coefficients, Calibration) else coefficients
    ctx = _Context(model, card, v, engine_of(v, settings.get("use_v1")), fam, settings, dtype_bytes(model, settings),
                   int(settings.get("tensor_parallel_size", 1)), coef or DEFAULT, exact)
    notes = setting_notes(v, ctx.eng, given, settings, engine_choice(model, card, v, given)[1])
    stages, ctx = _pipeline_stages(ctx, notes)
    exact, weights = ctx.exact, weights_term(model, settings, ctx.db, notes, None, ctx.v) if ctx.exact is None \
        else _exact_weights(ctx.exact, settings)
    non_torch = non_torch_term(settings, ctx.coef)
    prof, eager, enc = _encoder_profile(ctx, notes)
    enc_b = scaled_encoder_bytes(enc["total"], eager, ctx.coef)
    encoder = encoder_term(enc_b, eager, ctx.coef, enc.get("low") and scaled_encoder_bytes(enc["low"], eager, ctx.coef))
    llm_b, samp_b, rows = _llm_phase_bytes(ctx, prof)
    activation = activation_term(encoder, enc_b, llm_b, ctx.coef, _spread(ctx))
    graphs, graphs_budgeted = cuda_graph_term(settings, ctx.eng, ctx.coef, v), _graphs_budgeted(ctx)
    context_gib = ctx.coef.cuda_context_gib[0]
    whole, per_stage = ctx, []
    if stages:
        ctx, weights, (llm_b, samp_b, rows), activation, kv = _worst_stage(
            ctx, stages, prof, (encoder, enc_b), non_torch, (graphs, graphs_budgeted), notes, per_stage)
    else:
        kv = _kv_cache(ctx, (weights, non_torch, activation), graphs, graphs_budgeted, notes)
    peak = context_gib + weights.value_gib + non_torch.value_gib + activation.value_gib
    _fit_auto_length(ctx, _pp_check_tokens(whole, per_stage) or kv.tokens, notes)
    terms = StartupTerms(weights, non_torch, activation, kv, graphs, graphs_budgeted, enc_b / GiB,
                         llm_b / GiB, samp_b / GiB, peak, context_gib)
    outcome, phase = _judge(whole, terms, notes, per_stage)
    notes += known_limits(model, v, ctx.eng, settings) + layer_kind_notes(whole)
    notes += mm_guard_notes(model, v, settings, dict(prof.tokens_per_modality))
    if exact is not None:
        notes.append(_exact_note(exact, ctx.tp))
    if graphs.value_gib and not graphs_budgeted:
        notes.append(_graph_room_note(ctx, terms, outcome))
    if card.is_cpu:
        notes.append("cpu pseudo-card: total memory is read at run time; memory verdicts need [cards.cpu] total_gib")
    components = dict(zip(COMPONENTS, (weights, non_torch, encoder, activation, kv.term, graphs)))
    profile = _profile_json(prof, settings, rows, eager, enc, llm_b)
    profile.update(parts=_parts(ctx, prof, enc, rows, eager), cuda_graph_budgeted=graphs_budgeted,
                   **({"pipeline_stages": per_stage} if per_stage else {}))
    known_kv = settings.get("kv_cache_memory_bytes") is not None or settings.get("num_gpu_blocks_override") \
        or card.total_gib > 0
    return Plan(outcome, str(v), ctx.eng, ctx.fam, card, model, entrypoint, settings, components, profile, peak,
                kv.tokens if known_kv else None, phase, notes, context_gib, given, ctx.coef, exact)


def _spread(ctx: _Context) -> float:
    """terms.llm_pass_spread for the context's model at max_num_batched_tokens."""
    return llm_pass_spread(ctx.model, int(ctx.settings["max_num_batched_tokens"]), ctx.db, ctx.tp, ctx.v)


def _check_version(model: ModelSpec, v: Version) -> None:
    """UsageError (one line) when vLLM `v` cannot build the model: a VLM family it does not have (every family
    alike), a text architecture or rope_scaling type it does not register (predict.architectures), or a GGUF
    checkpoint outside the versions that load GGUF (diagnostics.gguf_header)."""
    if model.family is not None:
        check_version(model.family, v, model.name)
    why = text_refusal(model, v)
    if why:
        raise UsageError(why)
    if model.is_gguf:
        gguf_version_check(model.name, model.checkpoint, v)


def _judge(ctx: _Context, terms: StartupTerms, notes: list[str], per_stage: list[dict]) -> tuple[str, str | None]:
    """(outcome, failing phase): a start-up check that refuses the model, else predict.verdict's order of checks;
    under pipeline parallelism in 0.14-0.16, vLLM's one-request check over the whole model (`_pp_check_tokens`)."""
    blocker = startup_blocker(ctx.model, ctx.v, ctx.eng)
    if blocker:
        notes.append(blocker)
        return "error", "startup_check"
    outcome, phase = judge_verdict(ctx.card, ctx.v, ctx.eng, ctx.settings, terms, notes)
    pp_tokens, mml = _pp_check_tokens(ctx, per_stage), int(ctx.settings["max_model_len"])
    if pp_tokens is not None and pp_tokens < mml and outcome in ("ok", "oom_kv_alloc", "oom_cuda_graph"):
        notes.append(f"vLLM {ctx.v} checks one max_model_len request over all {ctx.model.layers} layers against the "
                     f"smallest pipeline stage's KV memory, which holds {pp_tokens:,} such tokens < {mml:,} (each "
                     "stage holds only its layers; vLLM 0.17 checks per stage; vllm#34076)")
        return "kv_too_small", "kv_cache"
    return outcome, phase


def _pp_check_tokens(ctx: _Context, per_stage: list[dict]) -> int | None:
    """pipeline.whole_model_check_tokens for this plan: the whole model's KV bytes per token as `_kv_cache` counts
    them; None without PP or with a fixed pool."""
    s = ctx.settings
    if not per_stage or s.get("kv_cache_memory_bytes") is not None or s.get("num_gpu_blocks_override"):
        return None
    kv_db = KV_CACHE_DTYPES.get(s.get("kv_cache_dtype", "auto")) or ctx.db
    block = kv_block_bytes(ctx.model, s, kv_db, ctx.eng == "V1" and ctx.v >= HYBRID_KV_SINCE, ctx.v)
    return pipeline.whole_model_check_tokens([st["kv_cache_gib"] * GiB for st in per_stage], block / s["block_size"],
                                             ctx.v)


def _pipeline_stages(ctx: _Context, notes: list[str]) -> tuple[list[pipeline.Stage], _Context]:
    """(the pipeline stages (predict.pipeline) when pipeline_parallel_size > 1, else [], the context): vLLM's own
    classes were asked for the whole model, so under PP the context drops them (noted). A VLLM_PP_LAYER_PARTITION
    is checked even for one stage, as vLLM's get_pp_indices checks it (distributed/utils.py:142-151, 0.32)."""
    pp = int(ctx.settings.get("pipeline_parallel_size") or 1)
    part = ctx.settings.get("VLLM_PP_LAYER_PARTITION")
    if pp == 1:
        if part is not None:
            pipeline.partition(ctx.model.layers, 1, ctx.v, part)
        return [], ctx
    stages = pipeline.stages(ctx.model, pp, ctx.v, part)
    if ctx.exact is not None:
        notes.append("pipeline_parallel_size > 1: vLLM's own classes were asked for the whole model, not one stage; "
                     "the per-stage terms use the pure rules")
        ctx = dataclasses.replace(ctx, exact=None)
    return stages, ctx


def _worst_stage(ctx: _Context, stages: list[pipeline.Stage], prof: mm_budget.MMProfile, enc: tuple[Term, int],
                 non_torch: Term, graphs: tuple[Term, bool], notes: list[str], table: list[dict]):
    """Every pipeline stage planned as its own worker (its layers, embeddings/head, the sampler on the last stage
    only: v1/worker/gpu_model_runner.py:6196-6200, 0.32), and the stage vLLM's KV pool follows: the one with the
    fewest KV blocks (every worker takes the smallest count: v1/core/kv_cache_utils.py:2662-2677, 0.32; V0
    executor/distributed_gpu_executor.py:44, 0.6.0). Returns (that stage's context, weights Term, (LLM phase
    bytes, sampler bytes, sampler rows), activation Term, KVCache); notes every stage's figures and appends them
    to `table` ({stage, layers [start, end), weights_gib, activation_gib, kv_cache_gib, kv_blocks}, GiB)."""
    rows_out, best = [], None
    for st in stages:
        sctx = dataclasses.replace(ctx, model=pipeline.stage_model(ctx.model, st))
        sink: list[str] = []
        w = weights_term(ctx.model, ctx.settings, ctx.db, sink, st, ctx.v)
        phase = _llm_phase_bytes(sctx, prof, sampler=st.is_last)
        act = activation_term(enc[0], enc[1], phase[0], ctx.coef, _spread(sctx))
        kv = _kv_cache(sctx, (w, non_torch, act), graphs[0], graphs[1], sink)
        rows_out.append(f"{st.label()}: weights {fmt_gib(w.value_gib)}, activation {fmt_gib(act.value_gib)}, "
                        f"KV {fmt_gib(kv.term.value_gib)} = {kv.blocks:,} blocks")
        table.append({"stage": st.index, "layers": [st.start, st.end], "weights_gib": round(w.value_gib, 3),
                      "activation_gib": round(act.value_gib, 3), "kv_cache_gib": round(kv.term.value_gib, 3),
                      "kv_blocks": kv.blocks})
        key = (kv.blocks, kv.value_gib)
        if best is None or key < best[0]:
            best = (key, st, sctx, w, phase, act, kv, sink)
    _, st, sctx, w, phase, act, kv, sink = best
    notes.extend(n for n in sink if n not in notes)
    notes.append(f"pipeline_parallel_size={st.size}: " + "; ".join(rows_out) + f". vLLM keeps the fewest KV blocks "
                 f"of any worker, so the plan is stage {st.index}'s")
    return sctx, w, phase, act, kv


def _kv_cache(ctx: _Context, used: tuple[Term, Term, Term], graphs: Term, graphs_budgeted: bool,
              notes: list[str]) -> KVCache:
    """The KV pool: bytes per block from vLLM's own code where it was asked (predict.exact), else the model's rule
    (sliding windows kept by V1's hybrid KV manager from HYBRID_KV_SINCE); the budget estimate-based (util x total
    - non-KV) or, 0.34's default on CUDA, the extensible KV cache (`_extensible_budget`)."""
    s, exact = ctx.settings, ctx.exact
    kv_db = KV_CACHE_DTYPES.get(s.get("kv_cache_dtype", "auto")) or ctx.db
    from_vllm = exact is not None and bool(exact.kv_bytes_per_token)
    block = (s["block_size"] * exact.kv_bytes_per_token if from_vllm else
             kv_block_bytes(ctx.model, s, kv_db, ctx.eng == "V1" and ctx.v >= HYBRID_KV_SINCE, ctx.v))
    if s.get("enable_extensible_kv_cache") and ctx.card.total_gib > 0:
        budget, graphs_sub = _extensible_budget(ctx, used[2], graphs, graphs_budgeted, notes)
        kv = kv_cache_term(ctx.model, s, kv_db, budget, used, graphs_sub, block, from_vllm)
        kv.term.basis = kv.term.basis.replace(
            "util x total - (weights + non_torch + activation peak) - CUDA graphs",
            "extensible KV cache, min(util x total, free at start - margin) - (weights + non_torch + CUDA graphs) - "
            "activation peak" + (" - graph estimate" if graphs_budgeted else ""), 1)
        return kv
    return kv_cache_term(ctx.model, s, kv_db, _kv_budget_gib(ctx), used, graphs if graphs_budgeted else None, block,
                         from_vllm)


def _exact_weights(exact: VllmExact, settings: dict) -> Term:
    tp = int(settings.get("tensor_parallel_size", 1))
    return Term.exact(exact_weights_gib(exact, settings),
                      f"{exact.label}: parameter and buffer bytes of {exact.model_class}"
                      + (f" on rank 0 of {tp}" if tp > 1 else ""))


def _exact_note(exact: VllmExact, tp: int) -> str:
    """Which terms came from vLLM's own code, and its KV spec per layer type."""
    rank = f" per rank (TP {tp})" if tp > 1 else ""
    kinds = "; ".join(
        f"{row['layers']} x {row['type']} " + (f"{row['bytes_per_token']:,.0f} B/token" if "bytes_per_token" in row
                                                else f"{row['state_bytes_per_sequence']:,} B state/sequence")
        for row in exact.kv_layers) or "no paged KV"
    per_token = (f"KV {exact.kv_bytes_per_token:,.0f} B/token{rank}" if exact.kv_bytes_per_token is not None
                 else "no KV bytes per token")
    fake = (f"; LLM pass {exact.llm_pass_bytes / GiB:.2f} GiB: estimate from a fake-tensor forward of transformers' "
            f"{exact.llm_pass_class} (torch MemTracker), in place of the formula" if exact.llm_pass_bytes else "")
    return f"weights and {per_token}: {exact.label} ({kinds}){fake}; --no-vllm-exact plans with the pure rules"


def _graph_room_note(ctx: _Context, t: StartupTerms, outcome: str) -> str:
    """Graphs outside the KV budget must fit in what the resident terms leave: (1 - gpu_memory_utilization) x total
    plus the freed activation peak, less the CUDA context. Names the oom_cuda_graph risk where the graph estimate's
    high bound does not fit, even when its value does."""
    note = "CUDA graphs are not in the KV budget in this version: they must fit in what is left"
    if ctx.card.total_gib <= 0 or outcome != "ok":  # a failure before capture: no room to speak of
        return note
    room = ctx.card.total_gib - (t.cuda_context_gib + t.weights.value_gib + t.non_torch.value_gib
                                 + t.kv.term.value_gib)
    if t.graphs.high_gib <= room:
        return note + f" ({fmt_gib(room)} left; graphs {fmt_gib(t.graphs.low_gib)} - {fmt_gib(t.graphs.high_gib)})"
    return (f"risk: oom_cuda_graph: CUDA graphs (estimate {fmt_gib(t.graphs.value_gib)}, up to "
            f"{fmt_gib(t.graphs.high_gib)}) are not in the KV budget in this version and may not fit in the "
            f"{fmt_gib(room)} left beside the KV cache (1 - gpu_memory_utilization of the card, plus the freed "
            "activation peak); lower gpu_memory_utilization, max_num_seqs, or set enforce_eager")


def _graphs_budgeted(ctx: _Context) -> bool:
    """V1 subtracts its CUDA-graph estimate from the KV budget when VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS is on:
    its default is settings.VERSIONED_DEFAULTS' (os.getenv(..., "0") in 0.19.0 envs.py:1654-1655, "1" from 0.20.0
    envs.py:1724-1725), absent before 0.18 (never subtracted)."""
    s = ctx.settings
    if ctx.eng != "V1" or s.get("enforce_eager") or ctx.v < (0, 18, 0):
        return False
    return bool(s.get("VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS",
                      dated_default("VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS", ctx.v)))


EXTENSIBLE_MARGIN_FLOOR_GIB = 1.0  # 0.34 v1/worker/extensible_kv_cache.py:64 KV_CACHE_MARGIN_FLOOR_BYTES (CUDA)
EXTENSIBLE_MARGIN_FRACTION = 0.75  # :65 KV_CACHE_MARGIN_FRACTION


def _extensible_budget(ctx: _Context, activation: Term, graphs: Term, graphs_budgeted: bool,
                       notes: list[str]) -> tuple[float, Term]:
    """vLLM 0.34's extensible KV cache (CUDA default): the pool is sized after warmup and graph capture from the
    memory then free, `measure_kv_cache_bytes` (0.34 v1/worker/extensible_kv_cache.py:592-618):

        non_kv_used = weights + non-torch + CUDA graphs (captured, so measured)
        peak        = transient activation peak + the graph estimate when VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS
                      is on (reserved_headroom_bytes = peak_activation_memory, gpu_worker.py:771-773, :946-948)
        margin      = max(1 GiB, 0.75 x peak)
        KV          = min(util x total - non_kv_used, free at start - non_kv_used - margin) - peak

    Returns (budget GiB = min(util x total, free at start - margin), the graph term to subtract: the captured
    graphs, twice when the estimate is also kept free). `derived` on the same terms as the estimate-based budget."""
    total, util = ctx.card.total_gib, float(ctx.settings["gpu_memory_utilization"])
    k = 2 if graphs_budgeted else 1
    peak = activation.value_gib + (graphs.value_gib if graphs_budgeted else 0.0)
    margin = max(EXTENSIBLE_MARGIN_FLOOR_GIB, EXTENSIBLE_MARGIN_FRACTION * peak)
    notes.append(f"vLLM {ctx.v} sizes the KV cache from memory measured after warmup and CUDA graph capture "
                 f"(extensible KV cache), keeping a {margin:.2f} GiB margin and the activation peak free; "
                 "set enable_extensible_kv_cache=false for the estimate-based budget")
    return (min(util * total, total - ctx.coef.cuda_context_gib[0] - margin),
            Term(graphs.value_gib * k, graphs.low_gib * k, graphs.high_gib * k, graphs.basis))


def _kv_budget_gib(ctx: _Context) -> float:
    """util x total; V1 0.7-0.9.0 measures non-torch as everything on the device, so the CUDA context comes off
    it too (0.8.5 v1/worker/gpu_worker.py:195-211; audit c3)."""
    budget = float(ctx.settings["gpu_memory_utilization"]) * ctx.card.total_gib
    if ctx.eng == "V1" and ctx.v < (0, 9, 1) and ctx.card.total_gib > 0:
        budget -= ctx.coef.cuda_context_gib[0]
    return budget


def _fit_auto_length(ctx: _Context, kv_tokens: int, notes: list[str]) -> None:
    """max_model_len=auto (0.14+): vLLM profiles at the model's length, then picks the longest length whose KV
    fits (kv_cache_planning.py:1545-1548); the settings carry that length from here on."""
    s = ctx.settings
    if not s.get("max_model_len_auto") or ctx.card.total_gib <= 0 or kv_tokens <= 0:
        return
    chosen = min(ctx.model.derived_max_model_len, kv_tokens - null_block_tokens(ctx.v, s))
    s["max_model_len"] = chosen
    notes.append(f"max_model_len=auto: vLLM would choose max_model_len={chosen} (the KV cache holds "
                 f"{kv_tokens} tokens; the model allows {ctx.model.derived_max_model_len})")


def _encoder_profile(ctx: _Context, notes: list[str]) -> tuple[mm_budget.MMProfile, bool, dict]:
    """The profile run's dummy items, whether the vision attention is eager, and the encoder pass's bytes."""
    prof = mm_budget.profile(ctx.model, ctx.settings, ctx.v, ctx.fam)
    if ctx.card.is_cpu and ctx.settings.get("enforce_eager"):
        notes.append("CPU backend in eager mode skips profile_run: no encoder profile at start-up")
        prof = dataclasses.replace(prof, skipped=True)
    if prof.skipped and not ctx.card.is_cpu:
        notes.append(_unguarded(ctx, prof))
    if prof.dropped:
        notes.append(f"vLLM {ctx.v} drops the dummy items of {prof.dropped} of {prof.sequences} dummy sequences: "
                     f"their {prof.tokens_per_item}+3-token prompt is longer than the sequence, so the profile run "
                     "has less encoder work (audit b4)")
    eager = eager_vision_attention(ctx.model, ctx.v, ctx.fam)
    if ctx.model.vision is None:
        return prof, eager, {"total": 0, "largest_alloc": 0}
    return prof, eager, encoder_bytes(ctx.model, prof, ctx.db, eager, ctx.tp, ctx.coef, ctx.v)


def _unguarded(ctx: _Context, prof: mm_budget.MMProfile) -> str:
    """skip_mm_profiling (vLLM 0.32 v1/worker/gpu_model_runner.py:6137): the encoder pass the profile run would have
    measured, which the KV cache now takes, so the first batch of items that size can run out of memory."""
    if prof.empty or ctx.model.vision is None:
        return "skip_mm_profiling: the encoder is not profiled (no dummy items here either)"
    eager = eager_vision_attention(ctx.model, ctx.v, ctx.fam)
    full = encoder_bytes(ctx.model, dataclasses.replace(prof, skipped=False), ctx.db, eager, ctx.tp, ctx.coef, ctx.v)
    gib = scaled_encoder_bytes(full["total"], eager, ctx.coef) / GiB
    return (f"skip_mm_profiling: the profile run no longer guards requests: {prof.items} {prof.modality} items of "
            f"{prof.tokens_per_item:,} tokens (about {gib:.2f} GiB of encoder activations) are not measured, the KV "
            "cache takes that memory, and a batch of real items that size can run out of memory later")


def _llm_phase_bytes(ctx: _Context, prof: mm_budget.MMProfile, sampler: bool = True) -> tuple[int, int, int]:
    """(encoder outputs + max(LLM pass, hidden states + sampler), sampler bytes, sampler rows) of the profile run.

    V0 builds max_num_seqs dummy sequences (fewer when dummy images fill max_num_batched_tokens); V1's
    `_dummy_sampler_run` samples max_num_seqs rows. sampler=False: a pipeline stage before the last, which runs
    no sampler (gpu_model_runner.py:6196-6200, 0.32).
    """
    s, model = ctx.settings, ctx.model
    mbt = s["max_num_batched_tokens"]
    rows = (prof.sequences or s["max_num_seqs"]) if ctx.eng == "V0" else min(s["max_num_seqs"], mbt)
    llm_b = int(llm_pass_bytes(model, mbt, ctx.db, ctx.tp, _eager_forward(ctx), ctx.v) * ctx.coef.llm_activation_scale)
    if ctx.exact is not None and ctx.exact.llm_pass_bytes:  # measured on fake tensors: no coefficient (issue #20)
        llm_b = int(ctx.exact.llm_pass_bytes)
    samp_b = sampler_bytes(model, rows, ctx.coef) if sampler else 0
    enc_out_b = prof.llm_mm_tokens * model.hidden * ctx.db if not prof.skipped else 0
    return enc_out_b + max(llm_b, mbt * model.hidden * ctx.db + samp_b), samp_b, rows


def _eager_forward(ctx: _Context) -> bool:
    """Whether the profile pass runs the model's Python forward as written: V0 (no torch.compile by default), or V1
    with enforce_eager (V1 compiles only without it: vllm/config.py 0.8.0:3479-3491; 0.15 logs 'Enforce eager set,
    overriding optimization level to -O0')."""
    return ctx.eng == "V0" or bool(ctx.settings.get("enforce_eager"))


def _parts(ctx: _Context, prof: mm_budget.MMProfile, enc: dict, rows: int, eager: bool) -> dict:
    """The shape-derived quantities before any coefficient, in bytes (what `predict.calibrate` fits against):
    the encoder pass, the LLM pass over max_num_batched_tokens, the encoder outputs and hidden states alive beside
    it, the sampler's logit count (rows x padded vocabulary), and the largest batch CUDA graphs capture. `eager`:
    `_encoder_profile`'s own decision (one place: the parts once re-derived it and disagreed for family VLMs)."""
    s, model = ctx.settings, ctx.model
    mbt = s["max_num_batched_tokens"]
    largest = largest_graph_batch(s, ctx.eng, ctx.v, (ctx.coef.cuda_graph_v0 if ctx.eng == "V0" else
                                                      ctx.coef.cuda_graph_v1)[2])
    return {"encoder_raw_bytes": int(enc["total"]), "llm_pass_raw_bytes": llm_pass_bytes(model, mbt, ctx.db, ctx.tp,
                                                                                  _eager_forward(ctx), ctx.v),
            "encoder_outputs_bytes": prof.llm_mm_tokens * model.hidden * ctx.db if not prof.skipped else 0,
            "hidden_bytes": mbt * model.hidden * ctx.db, "sampler_logits": rows * model.vocab_padded,
            "eager": eager and bool(enc["total"]),
            "tensor_parallel_size": ctx.tp, "graph_batch": largest, "graph_cap":
                (ctx.coef.cuda_graph_v0 if ctx.eng == "V0" else ctx.coef.cuda_graph_v1)[2]}


def _profile_json(prof: mm_budget.MMProfile, settings: dict, rows: int, eager: bool, enc: dict, llm_b: int) -> dict:
    return {
        "encoder_items": prof.items, "encoder_slices": prof.slices, "vit_tokens": prof.vit_tokens,
        "max_num_batched_tokens": settings["max_num_batched_tokens"],
        "encoder_budget_tokens": prof.encoder_budget_tokens,
        "modality": prof.modality, "sampler_rows": rows, "tokens_per_item": prof.tokens_per_item,
        "tokens_per_modality": dict(prof.tokens_per_modality),
        "encoder_skipped": prof.skipped, "eager_vision_attention": eager,
        "largest_alloc_gib": round(enc.get("largest_alloc", 0) / GiB, 3),
        "encoder_phase_gib": round(enc["total"] / GiB, 3), "llm_phase_gib": round(llm_b / GiB, 3),
    }
