"""A TOML matrix of engine settings -> the list of combinations the start-up tests run.

Layout of a matrix file (see diagnostics/data/minicpm-v-2_6.toml)::

    [matrix]                 # optional: name, model (used when --model is not given), request (bool),
                             # worst_case (bool: the worst-case request after each start; unset: on for GPU cards),
                             # planted_budget_mib (cpu card: every start's, the --search probes' too, unless a
                             # scenario sets its own)
    [defaults]               # engine settings every combination gets (trust_remote_code, dtype, ...)
    [axes]                   # setting = [values, ...]; the cartesian product, in file order
    [thresholds.CARD]        # optional, all combinations: profile_peak_gib / peak_gib for that card
    [scenarios.NAME]         # named extra combinations: settings as plain keys, plus the reserved keys
                             # expect = "oom_profile" (or a table [scenarios.NAME.expect] outcome = ...),
                             # request = bool, worst_case = bool, description = "...",
                             # [scenarios.NAME.thresholds.CARD], planted_budget_mib = N (cpu card: cap what the
                             # engine may allocate after start-up, engine/child.py plant_budget)

Every setting is checked by diagnostics.settings.check_setting (name, type, range); a malformed file raises
MatrixError("FILE:LINE: what is wrong"). Pure Python: no torch, no vllm.
"""

from __future__ import annotations

import itertools
import json
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from diagnostics.errors import UsageError
from diagnostics.outcomes import OUTCOMES
from diagnostics.settings import check_setting

SHIPPED_MATRIX = Path(__file__).parents[1] / "data" / "minicpm-v-2_6.toml"

# Short id prefixes for the usual axes: mml4096-seqs32-util1.0
ID_PREFIX = {
    "max_model_len": "mml",
    "max_num_seqs": "seqs",
    "gpu_memory_utilization": "util",
    "max_num_batched_tokens": "mbt",
    "kv_cache_memory_bytes": "kv",
    "enforce_eager": "eager",
    "limit_mm_per_prompt": "mm",
    "mm_processor_kwargs": "kw",
    "dtype": "",
}

THRESHOLD_KEYS = ("profile_peak_gib", "peak_gib")
SCENARIO_RESERVED = ("expect", "thresholds", "request", "description", "worst_case", "planted_budget_mib")
# Besides the outcomes themselves: "oom" = any memory failure (outcomes.MEMORY_FAILURES).
EXPECT_VALUES = tuple(OUTCOMES) + ("oom",)


class MatrixError(UsageError):
    """A malformed matrix file: `FILE:LINE: what is wrong`."""

    def __init__(self, path: Path | str, line: int | None, what: str):
        self.path, self.line, self.what = str(path), line, what
        super().__init__(f"{path}:{line}: {what}" if line else f"{path}: {what}")


@dataclass(frozen=True)
class Combination:
    id: str
    settings: dict
    scenario: str | None = None
    expect: str | None = None
    thresholds: dict = field(default_factory=dict)  # card name -> {"profile_peak_gib": x, "peak_gib": y}
    request: bool = False
    worst_case: bool | None = None  # None: the plugin's default (on for GPU cards, off on the cpu card)
    planted_budget_mib: int | None = None  # cpu card tests: the budget planted after start-up
    image_size: tuple | None = None  # (width, height) of the request's image; None: the plugin's default


@dataclass(frozen=True)
class Matrix:
    name: str
    model: str | None
    defaults: dict
    combinations: list[Combination]
    path: Path | None = None
    planted_budget_mib: int | None = None  # [matrix] planted_budget_mib: every start's (the --search probes too)

    def ids(self) -> list[str]:
        return [c.id for c in self.combinations]


def format_value(value: object) -> str:
    """A setting value as it appears in a test id: 4096, 1.0, 0.95, true, image1-video0."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return "-".join(f"{k}{format_value(v)}" for k, v in value.items())
    return re.sub(r"[^A-Za-z0-9_.]+", "_", str(value))


def combination_id(settings: dict) -> str:
    """`mml4096-seqs32-util1.0` for {max_model_len: 4096, max_num_seqs: 32, gpu_memory_utilization: 1.0}."""
    parts = []
    for key, value in settings.items():
        if key == "kv_cache_memory_bytes" and isinstance(value, int) and value % (1 << 20) == 0:
            parts.append(f"kv{value >> 20}MiB")
            continue
        prefix = ID_PREFIX.get(key, key)
        parts.append(f"{prefix}{format_value(value)}")
    return "-".join(parts)


def load_matrix(path: Path | str) -> Matrix:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a UTF-8 BOM (Windows editors) is not part of the TOML
    except OSError as err:
        raise MatrixError(path, None, f"cannot read the matrix file ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise MatrixError(path, None, f"not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); "
                                      "accepted: a TOML file") from None
    return parse_matrix(text, path)


def parse_matrix(text: str, path: Path | str = "<matrix>") -> Matrix:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        match = re.search(r"\(at line (\d+), column \d+\)", str(err))
        line = int(match.group(1)) if match else getattr(err, "lineno", None)
        what = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(err))
        raise MatrixError(path, line, f"not valid TOML: {what}") from None
    return build_matrix(data, text, path)


def build_matrix(data: dict, text: str = "", path: Path | str = "<matrix>") -> Matrix:
    """A Matrix from parsed TOML data (`text`, when given, lets an error name its line); MatrixError as
    parse_matrix. suite/family_matrix.py builds a stored VLM's matrix through it."""
    return _Builder(text, Path(path) if not isinstance(path, Path) else path).build(data)


class _Builder:
    """Turns parsed TOML into a Matrix; knows the text so errors can name a line."""

    def __init__(self, text: str, path: Path):
        self.lines = text.splitlines()
        self.path = path

    # -- line lookup -------------------------------------------------------------------------------------------
    def _table_line(self, table: str) -> int | None:
        """1-based line of the `[table]` header (quoted or bare key segments)."""
        parts = table.split(".")
        pattern = r"\s*\[\s*" + r"\s*\.\s*".join(rf'(?:"{re.escape(p)}"|{re.escape(p)})' for p in parts) + r"\s*\]"
        for number, line in enumerate(self.lines, 1):
            if re.match(pattern, line):
                return number
        return None

    def line_of(self, table: str | None, key: str | None = None) -> int | None:
        """Line of `key = ...` inside `[table]` (or the header itself when key is None); best effort."""
        start = (self._table_line(table) or 1) if table else 1
        if key is None:
            return start if table else None
        key_pattern = re.compile(rf'^\s*(?:"{re.escape(key)}"|{re.escape(key)})\s*=')
        for number in range(start, len(self.lines) + 1):
            if key_pattern.match(self.lines[number - 1]):
                return number
        # inline table or dotted key elsewhere: any mention of the key
        for number, line in enumerate(self.lines, 1):
            if re.search(rf"\b{re.escape(key)}\b", line):
                return number
        return start if table else None

    def fail(self, table: str | None, key: str | None, what: str) -> MatrixError:
        return MatrixError(self.path, self.line_of(table, key), what)

    # -- checks ------------------------------------------------------------------------------------------------
    def check_setting(self, table: str, key: str, value: object) -> None:
        """Name, type and range as diagnostics.settings accepts them (the one list of engine settings)."""
        try:
            check_setting(key, value)
        except UsageError as err:
            raise self.fail(table, key, f"in [{table}]: {err}") from None

    def check_expect(self, table: str, value: object) -> str:
        where = (f"{table}.expect", "outcome") if isinstance(value, dict) else (table, "expect")
        if isinstance(value, dict):
            value = value.get("outcome")
        if value not in EXPECT_VALUES:
            raise self.fail(*where, f"expect in [{table}] must be one of {', '.join(EXPECT_VALUES)}, not {value!r}")
        return str(value)

    def thresholds(self, table: str, raw: object) -> dict:
        if not isinstance(raw, dict):
            raise self.fail(table, "thresholds", f"thresholds in [{table}] must be a table of cards")
        out: dict[str, dict[str, float]] = {}
        for card, limits in raw.items():
            sub = f"{table}.thresholds.{card}" if table != "thresholds" else f"thresholds.{card}"
            if not isinstance(limits, dict):
                raise self.fail(table, str(card), f"[{sub}] must be a table of {', '.join(THRESHOLD_KEYS)}")
            for key, value in limits.items():
                if key not in THRESHOLD_KEYS:
                    raise self.fail(sub, key, f"unknown threshold {key!r} in [{sub}]; accepted: {', '.join(THRESHOLD_KEYS)}")
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                    raise self.fail(sub, key, f"{key} in [{sub}] must be a positive number of GiB, not {value!r}")
            out[str(card)] = {k: float(v) for k, v in limits.items()}
        return out

    # -- build -------------------------------------------------------------------------------------------------
    def flag(self, table: str, body: dict, key: str, default):
        value = body.get(key, default)
        if value is not None and not isinstance(value, bool):
            raise self.fail(table, key, f"{key} in [{table}] must be true or false, not {value!r}")
        return value

    def axis_combinations(self, axes: dict, thresholds: dict, request: bool,
                          worst_case: bool | None = None) -> list[Combination]:
        """The cross product of [axes] (each a non-empty list of valid values), in TOML order."""
        for key, values in axes.items():
            if not isinstance(values, list):
                raise self.fail("axes", key, f"axis {key!r} must be a list of values, not {values!r}")
            if not values:
                raise self.fail("axes", key, f"axis {key!r} is empty; give at least one value")
            for value in values:
                self.check_setting("axes", key, value)
        combinations = []
        if axes:
            for values in itertools.product(*axes.values()):
                settings = dict(zip(axes.keys(), values))
                combinations.append(Combination(id=combination_id(settings), settings=settings,
                                                thresholds=thresholds, request=request, worst_case=worst_case))
        return combinations

    def scenario(self, name: str, body, common_thresholds: dict, request_default: bool,
                 worst_case_default: bool | None = None) -> Combination:
        """One [scenarios.NAME] table: its settings, expect, request and thresholds (over the common ones)."""
        table = f"scenarios.{name}"
        if not name.strip() or any(ord(ch) < 32 for ch in name):
            raise self.fail("scenarios", None, f"scenario name {name!r} names nothing; accepted: a non-empty name "
                                               "without control characters, e.g. [scenarios.big-images]")
        if not isinstance(body, dict):
            raise self.fail("scenarios", name, f"scenario {name!r} must be a table")
        settings = {k: v for k, v in body.items() if k not in SCENARIO_RESERVED}
        for key, value in settings.items():
            self.check_setting(table, key, value)
        expect = self.check_expect(table, body["expect"]) if "expect" in body else None
        request = body.get("request", request_default)
        if not isinstance(request, bool):
            raise self.fail(table, "request", f"request in [{table}] must be true or false, not {request!r}")
        thresholds = dict(common_thresholds)
        if "thresholds" in body:
            thresholds.update(self.thresholds(table, body["thresholds"]))
        budget = self.budget(table, body)
        return Combination(id=name, settings=settings, scenario=name, expect=expect, thresholds=thresholds,
                           request=request, worst_case=self.flag(table, body, "worst_case", worst_case_default),
                           planted_budget_mib=budget)

    def budget(self, table: str, body: dict) -> int | None:
        """planted_budget_mib of [table]: None or a positive whole number of MiB (MatrixError otherwise)."""
        budget = body.get("planted_budget_mib")
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0):
            raise self.fail(table, "planted_budget_mib",
                            f"planted_budget_mib in [{table}] must be a positive whole number of MiB, not {budget!r}")
        return budget

    def build(self, data: dict) -> Matrix:
        allowed = {"matrix", "defaults", "axes", "scenarios", "thresholds"}
        for key in data:
            if key not in allowed:
                raise self.fail(key, None if isinstance(data[key], dict) else key,
                                f"unknown table [{key}]; accepted: {', '.join(sorted(allowed))}")
        meta = data.get("matrix", {})
        for key, value in meta.items():
            if key not in ("name", "model", "request", "description", "worst_case", "planted_budget_mib"):
                raise self.fail("matrix", key, f"unknown key {key!r} in [matrix]; accepted: description, model, name, "
                                "planted_budget_mib, request, worst_case")
        for key in ("name", "model", "description"):
            if key in meta and not isinstance(meta[key], str):
                raise self.fail("matrix", key, f"{key} in [matrix] must be text, not {meta[key]!r}")
        request_default = meta.get("request", False)
        if not isinstance(request_default, bool):
            raise self.fail("matrix", "request", f"request in [matrix] must be true or false, not {request_default!r}")

        defaults = data.get("defaults", {})
        for key, value in defaults.items():
            self.check_setting("defaults", key, value)
        common_thresholds = self.thresholds("thresholds", data["thresholds"]) if "thresholds" in data else {}

        worst_case = self.flag("matrix", meta, "worst_case", None)
        combinations = self.axis_combinations(data.get("axes", {}), common_thresholds, request_default, worst_case)
        for name, body in data.get("scenarios", {}).items():
            combinations.append(self.scenario(name, body, common_thresholds, request_default, worst_case))

        budget = self.budget("matrix", meta)
        combinations = [c if c.planted_budget_mib or not budget else replace(c, planted_budget_mib=budget)
                        for c in combinations]
        if not combinations:
            raise MatrixError(self.path, 1, "the matrix has no combinations: give [axes] or at least one [scenarios.NAME]")
        seen: dict[str, Combination] = {}
        for combo in combinations:
            if combo.id in seen:
                raise self.fail(f"scenarios.{combo.id}", None, f"two combinations have the id {combo.id!r}")
            seen[combo.id] = combo
        model = meta.get("model")
        return Matrix(name=str(meta.get("name", self.path.stem)), model=model, defaults=dict(defaults),
                      combinations=combinations, path=self.path, planted_budget_mib=budget)


def check_threshold_cards(matrix: Matrix, cards_file=None) -> None:
    """A [thresholds.CARD] for a card no profile knows (a typo like cpuu) would never apply, and the test would
    pass unchecked: MatrixError naming it. Known: the built-in cards and those of `cards_file` (--cards)."""
    from diagnostics.cards import list_cards, load_cards_toml

    known = {c.name for c in list_cards()} | set(load_cards_toml(cards_file) if cards_file else ())
    named = {card for combo in matrix.combinations for card in combo.thresholds}
    unknown = sorted(str(n) for n in named if str(n).strip().lower() not in known)
    if unknown:
        raise MatrixError(matrix.path or "<matrix>", None, f"thresholds for unknown card {unknown[0]!r}; accepted: "
                                                           f"{', '.join(sorted(known))} (or a card of --cards)")


def describe(combo: Combination) -> str:
    """One line: the id and the settings it sets."""
    return f"{combo.id}: {json.dumps(combo.settings, sort_keys=True)}"
