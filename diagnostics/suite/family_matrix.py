"""The default start-up matrix of a stored VLM (`pytest -m gpu --model Qwen/Qwen2.5-VL-7B-Instruct`, or its short
name, or `kit:NAME`): the shipped vlm.toml's max_model_len and max_num_seqs axes, its defaults and scenarios, and
one axis per setting the family's knobs act on, with values from the knobs' data (families/*.py `knobs(shape)`,
common.Knob): the value in effect when unset, then the one explain advises (or the next step down, or the other
value of a flag). So Qwen-VL gets max_pixels and {"video": 0} axes, MiniCPM-V max_slice_nums and {"video": 0},
InternVL max_patches (with the crop_to_patches it needs), Gemma 3 do_pan_and_scan, Llama-3.2-Vision enforce_eager
(its max_num_seqs knob is already an axis). `--matrix FILE` still runs FILE as written. Pure: no torch, no vllm.
"""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path

from diagnostics.families.common import Knob
from diagnostics.suite.matrix import Matrix, build_matrix

BASE_AXES = ("max_model_len", "max_num_seqs")  # vlm.toml's axes every family matrix keeps


def _unique(values: list) -> list:
    out: list = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def knob_values(knob: Knob) -> list:
    """The values a knob's axis takes: its value when unset (Knob.default), then the advised one (Knob.suggestion),
    or, where they are equal, the first of Knob.steps below the default; a flag takes both values. None (a value
    the knob's data leaves unset) is no value: a knob with none gives no axis."""
    if knob.unit == "flag":
        return [bool(knob.default), not bool(knob.default)]
    if knob.suggestion != knob.default:
        values = [knob.default, knob.suggestion]
    else:
        values = [knob.default] + (knob.steps(knob.default)[:1] if knob.default is not None else [])
    return _unique([v for v in values if v is not None])


def knob_axes(knobs: list[Knob]) -> dict[str, list]:
    """{setting: values} for every knob whose setting is not a base axis. Knobs on one dict-valued setting combine
    (one dict per combination of their values, in knob order); a knob that acts only with another key of its
    setting true (Knob.requires: InternVL's crop_to_patches, off in the checkpoint) carries that key in every value.
    A knob whose key is None sets the whole setting (LLaVA-OneVision's {"image": 1, "video": 0})."""
    groups: dict[str, list[list]] = {}
    for k in knobs:
        if k.setting in BASE_AXES:
            continue
        values = knob_values(k)
        if not values:
            continue
        if k.key is not None:
            need = {}
            if k.requires and k.requires[0] != k.key and not k.requires[1] and k.setting == "mm_processor_kwargs":
                need = {k.requires[0]: True}
            values = [{**need, **k.setting_value({}, v)} for v in values]  # a dotted key nests (size.longest_edge)
        groups.setdefault(k.setting, []).append(values)
    axes = {}
    for setting, lists in groups.items():
        if all(isinstance(v, dict) for vs in lists for v in vs):
            axes[setting] = _unique([{key: val for d in combo for key, val in d.items()}
                                     for combo in itertools.product(*lists)])
        else:  # a plain setting (enforce_eager): its knobs' values, once each
            axes[setting] = _unique([v for vs in lists for v in vs])
    return axes


def family_matrix(model, path: Path | str) -> Matrix:
    """The matrix for `model` (a diagnostics.models.ModelSpec with a family): `path`'s [matrix], [defaults],
    [thresholds] and [scenarios], its BASE_AXES, then the family's knob axes (knob_axes). MatrixError for a
    malformed `path`; the knob axes are checked as any matrix's are (diagnostics.settings.check_setting)."""
    text = Path(path).read_text(encoding="utf-8-sig")
    data = tomllib.loads(text)
    base = data.get("axes", {})
    data["axes"] = {**{k: base[k] for k in BASE_AXES if k in base}, **knob_axes(model.family.knobs)}
    data.setdefault("matrix", {})["name"] = f"{data['matrix'].get('name', 'vlm')}-{model.family.variant}"
    return build_matrix(data, text, path)


def default_matrix(matrix: str | None, model: str | None) -> Matrix:
    """The session's matrix: `matrix` (--matrix, or the CPU matrix the plugin names for --card=cpu) as written;
    without it, a stored VLM's family matrix over vlm.toml (family_matrix), else the MiniCPM-V-2_6 matrix
    (suite.run.matrix_path). MatrixError / UsageError as load_matrix."""
    from diagnostics.models import get_model
    from diagnostics.suite.matrix import load_matrix
    from diagnostics.suite.run import SHIPPED_VLM_MATRIX, local_model_spec, matrix_path, stored_vlm

    path = matrix_path(matrix, model)
    name = None if matrix else stored_vlm(model or "")
    if name:
        return family_matrix(get_model(name), path)
    local = None if matrix else local_model_spec(model)
    if local is not None and local.vision is None:  # a local text model: no image requests, no MiniCPM-V axes
        return text_matrix(SHIPPED_VLM_MATRIX)
    return load_matrix(path)


MM_SETTINGS = ("limit_mm_per_prompt", "mm_processor_kwargs")  # settings vLLM takes only for a multimodal model


def text_matrix(path: Path | str) -> Matrix:
    """The matrix of a text model given without --matrix: `path`'s (vlm.toml's) [defaults], its BASE_AXES and the
    scenarios that set no multimodal setting (MM_SETTINGS); its requests carry no image (the plugin's sends_image
    is False without a vision tower). MatrixError for a malformed `path`."""
    text = Path(path).read_text(encoding="utf-8-sig")
    data = tomllib.loads(text)
    base = data.get("axes", {})
    data["axes"] = {k: base[k] for k in BASE_AXES if k in base}
    data["scenarios"] = {n: b for n, b in data.get("scenarios", {}).items() if not set(b) & set(MM_SETTINGS)}
    data.setdefault("matrix", {})["name"] = f"{data['matrix'].get('name', 'vlm')}-text"
    return build_matrix(data, text, path)
