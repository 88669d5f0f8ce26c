"""Questionnaire instrument definitions and a pure-Python scoring engine.

Standard library only: no Django imports, so this module can be tested and reused without a
database. The Django side (the loader command, ``Response``/``Score`` models, flag tasks) calls
only the public API below.

Public API
----------
``definitions_dir()``, ``load_definition(path)``, ``load_all()``, ``get_definition(code)``,
``validate_definition(defn)``, ``validate_answers(defn, answers)``, ``score(defn, answers)``,
``reliable_change(defn, before, after)``, ``treatment_outcome(defn, baseline, current)``,
``hamd_outcome(baseline, current)``, ``primary_score(defn, scores, extras, scale=None)``,
``safety_unanswered(defn, answers)``;
exceptions ``DefinitionError`` and ``AnswerError`` (both ``ValueError``); result types
``ScoreResult``, ``ScaleScore``, ``SafetyHit``, ``PrimaryScore``.

Definition files
----------------
One JSON file per instrument version: ``outcomes/instruments/<code>-<version>.json``::

    code, version, name, respondent ("patient" | "coach" | "clinician"),
    citation, licence, verification,
    scale        {"min", "max", "step", "kind": "choice" | "vas", "labels": {"<value>": "..."}}
    items        [{"number", "label", "scale"?: {...per-item override...}, "scored": bool}]
    scoring      {"method": "sum" | "mean", "domains"?: [{"code", "items", "rule": "max"}]}
    missing      {"max_missing": int, "rule": "prorate" | "none"}          (applies to the total)
    subscales    [{"code", "name", "items", "missing"?: {...}}]
    reverse_items, bands [{"min", "max", "label"}], subscale_bands {code: [bands]},
    rci (number | null), rci_scale ("total" | subscale code),
    safety_items [{"number", "min_value", "urgent_value", "message"}],
    primary      {"scale", "statistic": "sum" | "mean" | "percent_of_max", "label"}
    special      {...instrument-specific rules, see below...}

Extensions to that schema (all optional unless marked required):

* ``higher_is_better`` (required, bool): direction used by ``reliable_change``.
* ``primary`` (required): the one score pages and exports show, as clinicians read it.
  ``scale`` is the headline scale ("total" or a subscale code); ``statistic`` is "sum" (needs
  ``scoring.method`` "sum"), "mean" (needs "mean") or "percent_of_max" (needs "mean" and
  ``special.percent_of_max``), so the band, which follows the method, always belongs to the
  number shown; ``label`` is the short word printed beside the number ("sum", "mean",
  "% of max"). Subscales are shown with the same statistic. See ``primary_score``.
* ``rci_source`` (str): where the RCI threshold comes from, or "clinic default".
* ``missing.require_subscales`` (bool): the total is scorable only when every subscale is
  scorable; it is then the sum of the (possibly prorated) subscale sums. The subscales must
  partition the scored items. Used by WAI-SR ("the total needs every subscale").
* ``scoring.domains``: when present, every scored item belongs to exactly one domain; a domain
  scores the maximum of its answered items and the total is the sum of domain scores (QIDS-SR-16).
  The total's ``answered``/``expected`` then count domains, its ``mean`` is None, and the only
  allowed missing rule is ``"none"`` (an unanswered alternative inside a domain is not missing).
* ``provisional`` (bool) and ``provisional_reason`` (str): the definition rests on facts that could
  not be verified (e.g. item order); the loader should warn before clinical use.
* ``special`` keys understood by the engine:
  ``percent_of_max`` (bool) -> ``extras["percent_of_max"]`` per scale;
  ``complete_mystical_experience`` {"subscales", "min_mean", "requires_all_items"} ->
  ``extras["complete_mystical_experience"]`` (True/False, or None when items are missing);
  ``cutoff`` (number) with ``cutoff_rule`` ("below" | "at_or_below") -> ``extras["below_cutoff"]``;
  ``score_label`` (str) -> ``extras["score_label"]``;
  ``treatment_outcome`` {"response_min_drop", "remission_max", ...} -> ``treatment_outcome()``.
  Other keys (notes, QIDS ``alternatives``, SRS ``drop_alert``) are informational.

Scoring conventions
-------------------
* Arithmetic is exact (``fractions.Fraction`` of the decimal answers); only results are rounded,
  half-up: item means to 2 decimals; sums, plain or prorated, of a sum-scored instrument to the
  decimals of the finest item step (0 for whole-number items, 1 for a 0.1-step VAS), so a
  prorated PHQ-9 total is a whole number as on the paper form; prorated sums of a mean-scored
  instrument (WAI-SR subscales, not its headline) to 1 decimal. Values are floats.
* ``ScaleScore.value`` is always the sum (prorated where allowed) and ``mean`` the item mean;
  ``headline`` is whichever of the two ``scoring.method`` names, and bands apply to it.
* Prorating: mean of the answered items x number of items, when at most ``max_missing`` items of
  that scale are unanswered.
* Bands are read as half-open intervals ``[min, next band's min)``, the last one closed at its
  ``max``. Bands are looked up on the rounded headline so the band shown always agrees with the
  number shown: a prorated PHQ-9 of 4 x 9 / 8 = 4.5 is shown as 5, "Mild"; 13 x 9 / 8 = 14.625
  as 15, "Moderately severe"; 11 x 9 / 7 = 14.14 as 14, "Moderate".
* Reverse-keyed items score ``item min + item max - answer``.
* Safety hits use the raw answer and are reported even when no total can be computed.
* ``ScoreResult.safety_unanswered`` lists the safety items left unanswered in a response that
  has at least one answer (a PHQ-9 without item 9 may still have a prorated total): the
  clinician has to ask.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from pathlib import Path
from typing import Any

__all__ = [
    "AnswerError",
    "DefinitionError",
    "PrimaryScore",
    "SafetyHit",
    "ScaleScore",
    "ScoreResult",
    "definitions_dir",
    "get_definition",
    "hamd_outcome",
    "load_all",
    "load_definition",
    "primary_score",
    "reliable_change",
    "safety_unanswered",
    "score",
    "treatment_outcome",
    "validate_answers",
    "validate_definition",
]

RESPONDENTS = ("patient", "coach", "clinician")
SCALE_KINDS = ("choice", "vas")
METHODS = ("sum", "mean")
MISSING_RULES = ("prorate", "none")
DOMAIN_RULES = ("max",)
CUTOFF_RULES = ("below", "at_or_below")
PRIMARY_STATISTICS = ("sum", "mean", "percent_of_max")
MAX_PRIMARY_LABEL_LENGTH = 24
MAX_LABEL_LENGTH = 60
_CODE_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_VERSION_RE = re.compile(r"^[0-9A-Za-z.]+$")
_SUBSCALE_CODE_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class DefinitionError(ValueError):
    """A definition file is malformed (unknown items, overlapping bands, ...)."""


class AnswerError(ValueError):
    """Answers are invalid; ``errors`` maps item number to a message."""

    def __init__(self, errors: Mapping[Any, str]):
        self.errors = dict(errors)
        detail = "; ".join(f"item {k}: {v}" for k, v in sorted(self.errors.items(), key=str))
        super().__init__(f"invalid answers: {detail}")


@dataclass(frozen=True)
class ScaleScore:
    """Score of the total (``code == "total"``) or of one subscale."""

    code: str
    value: float | None  # sum, prorated where allowed; None if not scorable
    mean: float | None  # item mean; None if not scorable (and for domain-scored totals)
    band: str  # band label of the headline, or ""
    answered: int  # answered items (domains for a domain-scored total)
    expected: int  # items (domains) the scale has
    complete: bool  # nothing missing
    prorated: bool
    headline: float | None = None  # value or mean, per scoring.method


@dataclass(frozen=True)
class SafetyHit:
    item: int
    value: float
    urgent: bool
    message: str


@dataclass(frozen=True)
class ScoreResult:
    scales: list[ScaleScore]
    complete: bool  # every scale complete (no missing, no prorating)
    safety_hits: list[SafetyHit] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    # Safety item numbers left unanswered although something was answered.
    safety_unanswered: list[int] = field(default_factory=list)

    def scale(self, code: str) -> ScaleScore:
        for s in self.scales:
            if s.code == code:
                return s
        raise KeyError(code)

    @property
    def total(self) -> ScaleScore:
        return self.scale("total")


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def definitions_dir() -> Path:
    """Directory holding the shipped ``<code>-<version>.json`` files."""
    return Path(__file__).resolve().parent / "instruments"


def load_definition(path: str | Path) -> dict:
    """Read, validate and return one definition; the file name must be ``<code>-<version>.json``."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as fh:
            defn = json.load(fh)
    except json.JSONDecodeError as exc:
        raise DefinitionError(f"{path.name}: not valid JSON ({exc})") from exc
    try:
        validate_definition(defn)
    except DefinitionError as exc:
        raise DefinitionError(f"{path.name}: {exc}") from exc
    expected_name = f"{defn['code']}-{defn['version']}.json"
    if path.name != expected_name:
        raise DefinitionError(f"{path.name}: file name should be {expected_name}")
    return defn


def load_all() -> list[dict]:
    """Every shipped definition, validated, sorted by code then version."""
    defs = [load_definition(p) for p in sorted(definitions_dir().glob("*.json"))]
    seen: set[tuple[str, str]] = set()
    for d in defs:
        key = (d["code"], d["version"])
        if key in seen:
            raise DefinitionError(f"duplicate definition {key}")
        seen.add(key)
    return sorted(defs, key=lambda d: (d["code"], version_key(d["version"])))


def get_definition(code: str, version: str | None = None) -> dict:
    """The shipped definition for ``code`` (the highest version unless one is named)."""
    matches = [d for d in load_all() if d["code"] == code]
    if version is not None:
        matches = [d for d in matches if d["version"] == str(version)]
    if not matches:
        raise DefinitionError(f"no definition for {code!r} version {version!r}")
    return max(matches, key=lambda d: version_key(d["version"]))


def version_key(version: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in version.split("."))


# --------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _frac(x: int | float | str | Fraction) -> Fraction:
    """Exact value of a decimal number as written (0.1 is 1/10, not the binary float)."""
    if isinstance(x, Fraction):
        return x
    return _exact(x)


# Answers and definition constants repeat endlessly (a bulk import, the demo's seeding), and
# the text round trip is most of scoring's time. `typed` keeps 1, 1.0 and "1" apart.
@functools.lru_cache(maxsize=4096, typed=True)
def _exact(x: int | float | str) -> Fraction:
    return Fraction(Decimal(str(x)))


def _round(x: Fraction, places: int) -> float:
    if x.denominator == 1 and -(10**15) < x.numerator < 10**15:
        # A whole number is its own rounding: most sums are, and the cache below hashes a
        # Fraction at a cost that showed when a bulk seed scored 100,000s of them.
        return float(x.numerator)
    return _round_ratio(x.numerator, x.denominator, places)


def _round_fraction(x: Fraction, places: int) -> float:
    return _round_ratio(x.numerator, x.denominator, places)


# The same few sums and means recur across thousands of responses (a bulk import, the demo's
# seeding), and the decimal round trip is a good part of scoring's time. Keyed by numerator
# and denominator: a Fraction's own hash costs a modular inverse.
@functools.lru_cache(maxsize=8192)
def _round_ratio(numerator: int, denominator: int, places: int) -> float:
    with localcontext() as ctx:
        ctx.prec = 50
        d = Decimal(numerator) / Decimal(denominator)
        return float(d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


@functools.lru_cache(maxsize=256, typed=True)
def _decimals(x: int | float) -> int:
    exponent = Decimal(str(x)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _sum(values: list[Fraction]) -> Fraction:
    """The exact sum. Whole numbers (most answers) are added as ints: Fraction's own addition
    reduces by the gcd at every step, most of scoring's arithmetic."""
    if all(v.denominator == 1 for v in values):
        return Fraction(sum(v.numerator for v in values))
    return sum(values, Fraction(0))


def _on_step(value: Fraction, low: Fraction, step: Fraction) -> bool:
    return ((value - low) / step).denominator == 1


# --------------------------------------------------------------------------------------------
# Definition helpers
# --------------------------------------------------------------------------------------------


def _item_map(defn: Mapping) -> dict[int, dict]:
    return {item["number"]: item for item in defn["items"]}


def _scored_numbers(defn: Mapping) -> list[int]:
    return [item["number"] for item in defn["items"] if item.get("scored", True)]


def _item_scale(defn: Mapping, item: Mapping) -> dict:
    """The item's effective response scale (default scale with the item's override on top)."""
    override = item.get("scale")
    if not override:
        return defn["scale"]
    merged = dict(defn["scale"])
    merged.update(override)
    if "labels" not in override:
        lo, hi = _frac(merged["min"]), _frac(merged["max"])
        merged["labels"] = {
            k: v for k, v in defn["scale"].get("labels", {}).items() if lo <= _frac(k) <= hi
        }
    return merged


def _method(defn: Mapping) -> str:
    return defn["scoring"]["method"]


def _sum_decimals(defn: Mapping) -> int:
    return max(_decimals(_item_scale(defn, item)["step"]) for item in defn["items"])


@dataclass(frozen=True)
class DefinitionFacts:
    """What scoring reads from a definition for every answer, worked out once. A caller that
    scores thousands of responses to one version (bulk seeding) prepares them once and passes
    them to ``score``; everyone else gets them prepared per call, as before."""

    items: dict  # item number -> item
    scales: dict  # item number -> the item's effective response scale
    scored: list  # the scored item numbers, in order
    reverse: frozenset
    method: str
    sum_decimals: int  # the finest item step's decimals: a sum is shown to that


def definition_facts(defn: Mapping) -> DefinitionFacts:
    items = _item_map(defn)
    scales = {n: _item_scale(defn, item) for n, item in items.items()}
    return DefinitionFacts(
        items=items,
        scales=scales,
        scored=_scored_numbers(defn),
        reverse=frozenset(defn.get("reverse_items", [])),
        method=_method(defn),
        sum_decimals=max((_decimals(sc["step"]) for sc in scales.values()), default=0),
    )


def _range_of(defn: Mapping, numbers: Iterable[int], *, domains: list | None = None) -> tuple:
    """(min, max) of the headline for a scale made of ``numbers`` (exact Fractions)."""
    items = _item_map(defn)
    bounds = {}
    for n in numbers:
        sc = _item_scale(defn, items[n])
        bounds[n] = (_frac(sc["min"]), _frac(sc["max"]))
    if domains:
        lo = sum(max(bounds[n][0] for n in d["items"]) for d in domains)
        hi = sum(max(bounds[n][1] for n in d["items"]) for d in domains)
        return Fraction(lo), Fraction(hi)
    lo = sum(b[0] for b in bounds.values())
    hi = sum(b[1] for b in bounds.values())
    if _method(defn) == "mean":
        count = len(bounds)
        return Fraction(lo) / count, Fraction(hi) / count
    return Fraction(lo), Fraction(hi)


# --------------------------------------------------------------------------------------------
# Definition validation
# --------------------------------------------------------------------------------------------


def _fail(msg: str) -> None:
    raise DefinitionError(msg)


def _require(defn: Mapping, key: str, kind: type | tuple, where: str = "definition") -> Any:
    if key not in defn:
        _fail(f"{where}: missing {key!r}")
    value = defn[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        _fail(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    return value


def _check_scale(scale: Any, where: str) -> None:
    if not isinstance(scale, dict):
        _fail(f"{where}: scale must be an object")
    for key in ("min", "max", "step"):
        if not _is_number(scale.get(key)):
            _fail(f"{where}: scale.{key} must be a number")
    lo, hi, step = _frac(scale["min"]), _frac(scale["max"]), _frac(scale["step"])
    if step <= 0:
        _fail(f"{where}: scale.step must be positive")
    if lo >= hi:
        _fail(f"{where}: scale.min must be below scale.max")
    if not _on_step(hi, lo, step):
        _fail(f"{where}: scale.max is not reachable from scale.min in steps of {scale['step']}")
    if scale.get("kind") not in SCALE_KINDS:
        _fail(f"{where}: scale.kind must be one of {SCALE_KINDS}")
    labels = scale.get("labels", {})
    if not isinstance(labels, dict):
        _fail(f"{where}: scale.labels must be an object")
    for key, text in labels.items():
        try:
            v = _frac(key)
        except (ArithmeticError, ValueError):
            _fail(f"{where}: scale label key {key!r} is not a number")
        if not (lo <= v <= hi) or not _on_step(v, lo, step):
            _fail(f"{where}: scale label {key!r} is outside the scale or off-step")
        if not isinstance(text, str) or not text.strip():
            _fail(f"{where}: scale label {key!r} must be a non-empty string")


def _check_missing(missing: Any, size: int, where: str, *, allow_subscale_rule: bool) -> None:
    if not isinstance(missing, dict):
        _fail(f"{where}: missing must be an object")
    mm = missing.get("max_missing")
    if not isinstance(mm, int) or isinstance(mm, bool) or mm < 0:
        _fail(f"{where}: missing.max_missing must be a non-negative integer")
    if mm >= size:
        _fail(f"{where}: missing.max_missing ({mm}) must be below the number of items ({size})")
    rule = missing.get("rule")
    if rule not in MISSING_RULES:
        _fail(f"{where}: missing.rule must be one of {MISSING_RULES}")
    if rule == "none" and mm != 0:
        _fail(f"{where}: missing.rule 'none' requires max_missing 0")
    if "require_subscales" in missing:
        if not allow_subscale_rule:
            _fail(f"{where}: require_subscales applies to the total only")
        if not isinstance(missing["require_subscales"], bool):
            _fail(f"{where}: require_subscales must be true or false")


def _check_bands(bands: Any, lo: Fraction, hi: Fraction, where: str) -> None:
    if not isinstance(bands, list):
        _fail(f"{where}: bands must be a list")
    if not bands:
        return
    previous = None
    labels = set()
    for i, band in enumerate(bands):
        if not isinstance(band, dict) or not _is_number(band.get("min")):
            _fail(f"{where}: band {i} needs a numeric min")
        if not _is_number(band.get("max")):
            _fail(f"{where}: band {i} needs a numeric max")
        if not isinstance(band.get("label"), str) or not band["label"].strip():
            _fail(f"{where}: band {i} needs a label")
        if band["label"] in labels:
            _fail(f"{where}: duplicate band label {band['label']!r}")
        labels.add(band["label"])
        bmin, bmax = _frac(band["min"]), _frac(band["max"])
        if bmin > bmax:
            _fail(f"{where}: band {band['label']!r} has min above max")
        if previous is not None and bmin <= previous:
            _fail(f"{where}: band {band['label']!r} overlaps or is out of order")
        previous = bmax
    first, last = _frac(bands[0]["min"]), _frac(bands[-1]["max"])
    if first != lo or last != hi:
        _fail(
            f"{where}: bands must cover the score range {float(lo):g}-{float(hi):g} "
            f"(they cover {float(first):g}-{float(last):g})"
        )


def validate_definition(defn: Any) -> None:
    """Raise ``DefinitionError`` with a clear message if ``defn`` is malformed."""
    if not isinstance(defn, dict):
        _fail("a definition must be a JSON object")
    code = _require(defn, "code", str)
    if not _CODE_RE.match(code):
        _fail(f"code {code!r} must be lower-case letters and digits joined by hyphens")
    version = _require(defn, "version", str)
    if not _VERSION_RE.match(version):
        _fail(f"version {version!r} must be letters, digits and dots")
    where = f"{code}-{version}"
    for key in ("name", "citation", "licence", "verification"):
        if not _require(defn, key, str, where).strip():
            _fail(f"{where}: {key!r} must not be empty")
    if defn.get("respondent") not in RESPONDENTS:
        _fail(f"{where}: respondent must be one of {RESPONDENTS}")
    _require(defn, "higher_is_better", bool, where)
    if "provisional" in defn and not isinstance(defn["provisional"], bool):
        _fail(f"{where}: provisional must be true or false")

    _check_scale(_require(defn, "scale", dict, where), where)

    # Items
    items = _require(defn, "items", list, where)
    if not items:
        _fail(f"{where}: no items")
    numbers = []
    for item in items:
        if not isinstance(item, dict):
            _fail(f"{where}: every item must be an object")
        n = item.get("number")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            _fail(f"{where}: item number {n!r} must be a positive integer")
        label = item.get("label")
        if not isinstance(label, str) or not label.strip():
            _fail(f"{where}: item {n} needs a label")
        if len(label) > MAX_LABEL_LENGTH:
            _fail(f"{where}: item {n} label is longer than {MAX_LABEL_LENGTH} characters")
        if not isinstance(item.get("scored", True), bool):
            _fail(f"{where}: item {n} 'scored' must be true or false")
        if "scale" in item:
            _check_scale(_item_scale(defn, item), f"{where} item {n}")
        numbers.append(n)
    if len(set(numbers)) != len(numbers):
        _fail(f"{where}: duplicate item numbers")
    if numbers != list(range(1, len(numbers) + 1)):
        _fail(f"{where}: items must be numbered 1..{len(numbers)} in order")
    known = set(numbers)
    scored = _scored_numbers(defn)
    scored_set = set(scored)
    if not scored:
        _fail(f"{where}: no scored items")

    def check_item_list(values: Any, what: str, *, allow_empty: bool = False) -> list[int]:
        if not isinstance(values, list) or (not values and not allow_empty):
            _fail(f"{where}: {what} must be a non-empty list of item numbers")
        for n in values:
            if n not in known:
                _fail(f"{where}: {what} names unknown item {n!r}")
            if n not in scored_set:
                _fail(f"{where}: {what} names unscored item {n}")
        if len(set(values)) != len(values):
            _fail(f"{where}: {what} lists an item twice")
        return values

    # Scoring
    scoring = _require(defn, "scoring", dict, where)
    if scoring.get("method") not in METHODS:
        _fail(f"{where}: scoring.method must be one of {METHODS}")
    domains = scoring.get("domains")
    if domains is not None:
        if not isinstance(domains, list) or not domains:
            _fail(f"{where}: scoring.domains must be a non-empty list")
        if scoring["method"] != "sum":
            _fail(f"{where}: domain scoring needs scoring.method 'sum'")
        covered: list[int] = []
        codes = set()
        for d in domains:
            if not isinstance(d, dict) or not isinstance(d.get("code"), str):
                _fail(f"{where}: every domain needs a code")
            if d["code"] in codes:
                _fail(f"{where}: duplicate domain {d['code']!r}")
            codes.add(d["code"])
            if d.get("rule") not in DOMAIN_RULES:
                _fail(f"{where}: domain {d['code']!r} rule must be one of {DOMAIN_RULES}")
            covered += check_item_list(d.get("items"), f"domain {d['code']!r}")
        if sorted(covered) != sorted(scored):
            _fail(f"{where}: domains must cover every scored item exactly once")

    # Subscales
    subscales = _require(defn, "subscales", list, where)
    sub_codes = set()
    for sub in subscales:
        if not isinstance(sub, dict):
            _fail(f"{where}: every subscale must be an object")
        sc = sub.get("code")
        if not isinstance(sc, str) or not _SUBSCALE_CODE_RE.match(sc) or sc == "total":
            _fail(f"{where}: subscale code {sc!r} must be snake_case and not 'total'")
        if sc in sub_codes:
            _fail(f"{where}: duplicate subscale {sc!r}")
        sub_codes.add(sc)
        if not isinstance(sub.get("name"), str) or not sub["name"].strip():
            _fail(f"{where}: subscale {sc!r} needs a name")
        sub_items = check_item_list(sub.get("items"), f"subscale {sc!r}")
        if "missing" in sub:
            _check_missing(
                sub["missing"],
                len(sub_items),
                f"{where} subscale {sc!r}",
                allow_subscale_rule=False,
            )

    # Missing rule for the total
    size = len(domains) if domains else len(scored)
    missing = _require(defn, "missing", dict, where)
    _check_missing(missing, size, where, allow_subscale_rule=True)
    if domains and missing["rule"] != "none":
        _fail(f"{where}: a domain-scored total cannot be prorated (use rule 'none')")
    if missing.get("require_subscales"):
        if domains:
            _fail(f"{where}: require_subscales cannot be combined with domains")
        in_subs = sorted(n for sub in subscales for n in sub["items"])
        if in_subs != sorted(scored):
            _fail(f"{where}: require_subscales needs subscales that partition the scored items")

    check_item_list(_require(defn, "reverse_items", list, where), "reverse_items", allow_empty=True)

    # Bands
    lo, hi = _range_of(defn, scored, domains=domains)
    _check_bands(_require(defn, "bands", list, where), lo, hi, where)
    sub_bands = defn.get("subscale_bands", {})
    if not isinstance(sub_bands, dict):
        _fail(f"{where}: subscale_bands must be an object")
    subs_by_code = {s["code"]: s for s in subscales}
    for sc, bands in sub_bands.items():
        if sc not in subs_by_code:
            _fail(f"{where}: subscale_bands names unknown subscale {sc!r}")
        slo, shi = _range_of(defn, subs_by_code[sc]["items"])
        _check_bands(bands, slo, shi, f"{where} subscale {sc!r}")

    # Reliable change
    if "rci" not in defn:
        _fail(f"{where}: missing 'rci' (use null when there is none)")
    rci = defn["rci"]
    if rci is not None and (not _is_number(rci) or rci <= 0):
        _fail(f"{where}: rci must be a positive number or null")
    rci_scale = defn.get("rci_scale", "total")
    if rci_scale != "total" and rci_scale not in sub_codes:
        _fail(f"{where}: rci_scale {rci_scale!r} is neither 'total' nor a subscale")

    # Safety items
    items_by_number = _item_map(defn)
    for hit in _require(defn, "safety_items", list, where):
        if not isinstance(hit, dict) or hit.get("number") not in known:
            _fail(f"{where}: safety item names unknown item {hit!r}")
        n = hit["number"]
        sc = _item_scale(defn, items_by_number[n])
        lo_i, hi_i = _frac(sc["min"]), _frac(sc["max"])
        if not _is_number(hit.get("min_value")) or not lo_i < _frac(hit["min_value"]) <= hi_i:
            _fail(f"{where}: safety item {n} min_value must lie above the item minimum")
        urgent = hit.get("urgent_value")
        if urgent is not None and (
            not _is_number(urgent) or not _frac(hit["min_value"]) <= _frac(urgent) <= hi_i
        ):
            _fail(f"{where}: safety item {n} urgent_value must be null or min_value..item max")
        if not isinstance(hit.get("message"), str) or not hit["message"].strip():
            _fail(f"{where}: safety item {n} needs a message")

    _check_special(defn, where, sub_codes, lo, hi)
    _check_primary(defn, where, sub_codes)


def _check_primary(defn: Mapping, where: str, sub_codes: set) -> None:
    primary = _require(defn, "primary", dict, where)
    if primary.get("scale") != "total" and primary.get("scale") not in sub_codes:
        _fail(f"{where}: primary.scale must be 'total' or a subscale code")
    statistic = primary.get("statistic")
    if statistic not in PRIMARY_STATISTICS:
        _fail(f"{where}: primary.statistic must be one of {PRIMARY_STATISTICS}")
    # The band follows scoring.method, so the number shown must be that same statistic
    # (or, for percent of maximum, a fixed rescaling of the item mean).
    needs = "sum" if statistic == "sum" else "mean"
    if _method(defn) != needs:
        _fail(
            f"{where}: primary.statistic {statistic!r} needs scoring.method {needs!r} "
            f"(the band is read on the {_method(defn)})"
        )
    if statistic == "percent_of_max" and not defn.get("special", {}).get("percent_of_max"):
        _fail(f"{where}: primary.statistic 'percent_of_max' needs special.percent_of_max")
    label = primary.get("label")
    if not isinstance(label, str) or not label.strip():
        _fail(f"{where}: primary.label must be a non-empty string")
    if len(label) > MAX_PRIMARY_LABEL_LENGTH:
        _fail(f"{where}: primary.label is longer than {MAX_PRIMARY_LABEL_LENGTH} characters")


def _check_special(defn: Mapping, where: str, sub_codes: set, lo: Fraction, hi: Fraction) -> None:
    special = defn.get("special", {})
    if not isinstance(special, dict):
        _fail(f"{where}: special must be an object")
    if "percent_of_max" in special and not isinstance(special["percent_of_max"], bool):
        _fail(f"{where}: special.percent_of_max must be true or false")
    cme = special.get("complete_mystical_experience")
    if cme is not None:
        subs = cme.get("subscales") if isinstance(cme, dict) else None
        if not isinstance(subs, list) or not subs or any(s not in sub_codes for s in subs):
            _fail(f"{where}: complete_mystical_experience.subscales must name subscales")
        if not _is_number(cme.get("min_mean")):
            _fail(f"{where}: complete_mystical_experience.min_mean must be a number")
    if "cutoff" in special:
        if not _is_number(special["cutoff"]) or not lo <= _frac(special["cutoff"]) <= hi:
            _fail(f"{where}: special.cutoff must be a number within the score range")
        if special.get("cutoff_rule", "below") not in CUTOFF_RULES:
            _fail(f"{where}: special.cutoff_rule must be one of {CUTOFF_RULES}")
    outcome = special.get("treatment_outcome")
    if outcome is not None:
        if not isinstance(outcome, dict):
            _fail(f"{where}: special.treatment_outcome must be an object")
        drop = outcome.get("response_min_drop")
        if not _is_number(drop) or not 0 < drop <= 1:
            _fail(f"{where}: treatment_outcome.response_min_drop must be a fraction in (0, 1]")
        rem = outcome.get("remission_max")
        if not _is_number(rem) or not lo <= _frac(rem) <= hi:
            _fail(f"{where}: treatment_outcome.remission_max must lie within the score range")
        if defn["higher_is_better"]:
            _fail(f"{where}: treatment_outcome assumes lower scores are better")


# --------------------------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------------------------


def _normalise_keys(answers: Mapping) -> dict:
    """Item numbers as ints; digit strings (JSON round-trips) are accepted and converted."""
    out = {}
    for key, value in answers.items():
        if isinstance(key, str) and key.strip().isdigit():
            key = int(key)
        out[key] = value
    return out


def validate_answers(
    defn: Mapping, answers: Mapping, *, facts: DefinitionFacts | None = None
) -> dict:
    """Return ``{item_number: message}`` for unknown items, non-numbers, out-of-range or off-step
    answers. ``None`` (or an absent key) means unanswered and is never an error here.
    ``facts``: ``definition_facts(defn)``, when the caller keeps them."""
    return _answer_errors((facts or definition_facts(defn)).scales, _normalise_keys(answers))


def _answer_errors(scales: Mapping, answers: Mapping) -> dict:
    """`validate_answers` for answers whose keys are already normalised."""
    errors: dict = {}
    for key, value in answers.items():
        if not isinstance(key, int) or isinstance(key, bool) or key not in scales:
            errors[key] = "unknown item"
            continue
        if value is None:
            continue
        # `_is_number`, inline: it ran for every answer of every response scored.
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            errors[key] = f"answer {value!r} is not a number"
            continue
        sc = scales[key]
        error = _answer_error(value, sc["min"], sc["max"], sc["step"])
        if error:
            errors[key] = error
    return errors


# The same few answers meet the same few scales over and over: check each pairing once.
@functools.lru_cache(maxsize=4096, typed=True)
def _answer_error(
    value: int | float, low: int | float, high: int | float, step: int | float
) -> str:
    v, lo, hi, st = (_frac(x) for x in (value, low, high, step))
    if not lo <= v <= hi:
        return f"answer {value:g} is outside {low:g}-{high:g}"
    if not _on_step(v, lo, st):
        return f"answer {value:g} is not a multiple of {step:g} from {low:g}"
    return ""


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


def safety_unanswered(defn: Mapping, answers: Mapping) -> list[int]:
    """The definition's safety items left unanswered, when anything at all was answered."""
    return _safety_unanswered(defn, _normalise_keys(answers))


def _safety_unanswered(defn: Mapping, answers: Mapping) -> list[int]:
    if all(v is None for v in answers.values()):
        return []
    return [s["number"] for s in defn.get("safety_items", []) if answers.get(s["number"]) is None]


def _band_for(bands: list, headline: float | None) -> str:
    if headline is None or not bands:
        return ""
    h = _frac(headline)
    for i, band in enumerate(bands):
        upper_ok = h < _frac(bands[i + 1]["min"]) if i + 1 < len(bands) else h <= _frac(band["max"])
        if _frac(band["min"]) <= h and upper_ok:
            return band["label"]
    return ""


@dataclass
class _Exact:
    value: Fraction | None = None
    mean: Fraction | None = None


def _score_group(
    facts: DefinitionFacts,
    code: str,
    numbers: list[int],
    missing: Mapping,
    values: Mapping[int, Fraction | None],
    bands: list,
) -> tuple[ScaleScore, _Exact]:
    answered_values = [values[n] for n in numbers if values[n] is not None]
    expected, answered = len(numbers), len(answered_values)
    n_missing = expected - answered
    if answered == 0 or n_missing > missing["max_missing"]:
        return ScaleScore(code, None, None, "", answered, expected, False, False, None), _Exact()
    total = _sum(answered_values)
    mean = total / answered
    prorated = n_missing > 0
    value = mean * expected if prorated else total
    return _finish(facts, code, value, mean, answered, expected, prorated, bands), _Exact(
        value, mean
    )


def _finish(
    facts: DefinitionFacts,
    code: str,
    value: Fraction,
    mean: Fraction | None,
    answered: int,
    expected: int,
    prorated: bool,
    bands: list,
) -> ScaleScore:
    # A sum-scored instrument shows its sum (prorated or not) as the paper form would: to the
    # finest item step, so the band is read on the number the clinician sees.
    places = 1 if prorated and facts.method != "sum" else facts.sum_decimals
    value_r = _round(value, places)
    mean_r = None if mean is None else _round(mean, 2)
    headline = mean_r if facts.method == "mean" else value_r
    return ScaleScore(
        code=code,
        value=value_r,
        mean=mean_r,
        band=_band_for(bands, headline),
        answered=answered,
        expected=expected,
        complete=answered == expected and not prorated,
        prorated=prorated,
        headline=headline,
    )


def score(defn: Mapping, answers: Mapping, *, facts: DefinitionFacts | None = None) -> ScoreResult:
    """Score one response. ``answers`` maps item number to the answer (None = unanswered).

    Raises ``AnswerError`` if ``validate_answers`` reports anything. Means are rounded to
    2 decimals and sums of a sum-scored instrument, prorated or not, to the finest item step
    (half-up); see the module docstring. ``facts``: ``definition_facts(defn)``, when the
    caller scores many responses to one definition.
    """
    facts = facts or definition_facts(defn)
    # Normalised once here, not again by each check below: a bulk seed scores 100,000s.
    answers = _normalise_keys(answers)
    errors = _answer_errors(facts.scales, answers)
    if errors:
        raise AnswerError(errors)
    values: dict[int, Fraction | None] = {}
    for n in facts.scored:
        raw = answers.get(n)
        if raw is None:
            values[n] = None
        elif n in facts.reverse:
            sc = facts.scales[n]
            values[n] = _frac(sc["min"]) + _frac(sc["max"]) - _exact(raw)
        else:
            values[n] = _exact(raw)  # validated above: an int or a float, never a Fraction

    # Safety first: reported whatever else happens.
    hits = []
    for s in defn.get("safety_items", []):
        raw = answers.get(s["number"])
        if raw is not None and _frac(raw) >= _frac(s["min_value"]):
            urgent = s.get("urgent_value") is not None and _frac(raw) >= _frac(s["urgent_value"])
            hits.append(SafetyHit(s["number"], float(raw), urgent, s["message"]))

    extras: dict[str, Any] = {}
    sub_bands = defn.get("subscale_bands", {})
    sub_results: list[ScaleScore] = []
    exact: dict[str, _Exact] = {}
    for sub in defn["subscales"]:
        rule = sub.get("missing", {"max_missing": 0, "rule": "none"})
        res, ex = _score_group(
            facts, sub["code"], sub["items"], rule, values, sub_bands.get(sub["code"], [])
        )
        sub_results.append(res)
        exact[sub["code"]] = ex

    missing = defn["missing"]
    domains = defn["scoring"].get("domains")
    if domains:
        domain_scores = {}
        for d in domains:
            answered_values = [values[n] for n in d["items"] if values[n] is not None]
            domain_scores[d["code"]] = max(answered_values) if answered_values else None
        extras["domains"] = {k: (None if v is None else float(v)) for k, v in domain_scores.items()}
        answered = sum(v is not None for v in domain_scores.values())
        expected = len(domains)
        if expected - answered > missing["max_missing"]:
            total = ScaleScore("total", None, None, "", answered, expected, False, False, None)
            exact["total"] = _Exact()
        else:
            value = sum((v for v in domain_scores.values() if v is not None), Fraction(0))
            total = _finish(facts, "total", value, None, answered, expected, False, defn["bands"])
            exact["total"] = _Exact(value, None)
    elif missing.get("require_subscales"):
        scored = facts.scored
        answered = sum(values[n] is not None for n in scored)
        if any(s.value is None for s in sub_results):
            total = ScaleScore("total", None, None, "", answered, len(scored), False, False, None)
            exact["total"] = _Exact()
        else:
            value = sum((exact[s.code].value for s in sub_results), Fraction(0))
            prorated = any(s.prorated for s in sub_results)
            mean = value / len(scored)
            total = _finish(
                facts, "total", value, mean, answered, len(scored), prorated, defn["bands"]
            )
            exact["total"] = _Exact(value, mean)
    else:
        total, exact["total"] = _score_group(
            facts, "total", facts.scored, missing, values, defn["bands"]
        )

    scales = [total, *sub_results]
    _add_extras(defn, scales, exact, values, extras)
    return ScoreResult(
        scales=scales,
        complete=all(s.complete for s in scales),
        safety_hits=hits,
        extras=extras,
        safety_unanswered=_safety_unanswered(defn, answers),
    )


def _add_extras(
    defn: Mapping,
    scales: list[ScaleScore],
    exact: Mapping[str, _Exact],
    values: Mapping[int, Fraction | None],
    extras: dict,
) -> None:
    special = defn.get("special", {})
    if special.get("percent_of_max"):
        lo, hi = _frac(defn["scale"]["min"]), _frac(defn["scale"]["max"])
        extras["percent_of_max"] = {
            s.code: (
                None
                if exact[s.code].mean is None
                else _round((exact[s.code].mean - lo) / (hi - lo) * 100, 1)
            )
            for s in scales
        }
    cme = special.get("complete_mystical_experience")
    if cme is not None:
        all_answered = all(v is not None for v in values.values())
        if cme.get("requires_all_items", True) and not all_answered:
            extras["complete_mystical_experience"] = None
        else:
            threshold = _frac(cme["min_mean"])
            means = [exact[code].mean for code in cme["subscales"]]
            extras["complete_mystical_experience"] = all(
                m is not None and m >= threshold for m in means
            )
    if "cutoff" in special:
        total = exact["total"]
        headline = total.mean if _method(defn) == "mean" else total.value
        if headline is None:
            extras["below_cutoff"] = None
        elif special.get("cutoff_rule", "below") == "below":
            extras["below_cutoff"] = headline < _frac(special["cutoff"])
        else:
            extras["below_cutoff"] = headline <= _frac(special["cutoff"])
    if "score_label" in special:
        extras["score_label"] = special["score_label"]


# --------------------------------------------------------------------------------------------
# The score to show
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrimaryScore:
    """One scale's score as a clinician reads it: the number, what it is, its band."""

    scale: str  # "total" or a subscale code
    name: str  # "Total" or the subscale's name
    statistic: str  # "sum", "mean" or "percent_of_max"
    label: str  # the definition's word for it: "sum", "mean", "% of max", ...
    value: float | None  # the number to show; None when the scale could not be scored
    band: str  # band label, or ""
    prorated: bool

    @property
    def shown(self) -> str:
        """The number as printed: "16", "32.6", "3.25"; "" when not scorable."""
        if self.value is None:
            return ""
        text = f"{Decimal(str(self.value)):f}"
        return text.rstrip("0").rstrip(".") if "." in text else text


def primary_score(
    defn: Mapping,
    scores: Mapping[str, Any],
    extras: Mapping | None = None,
    *,
    scale: str | None = None,
) -> PrimaryScore:
    """The score of ``scale`` (default: the definition's primary scale) as pages and exports
    show it, per ``defn["primary"]``.

    ``scores`` maps scale codes to objects with ``value`` (sum), ``mean``, ``band`` and
    ``prorated`` attributes: a ``ScaleScore`` or a stored ``Score`` row. ``extras`` are the
    scoring extras (for percent of maximum). A scale missing from ``scores`` is not scorable.
    """
    primary = defn["primary"]
    code = scale or primary["scale"]
    names = {"total": "Total", **{s["code"]: s["name"] for s in defn["subscales"]}}
    if code not in names:
        raise KeyError(code)
    found = scores.get(code)
    value = None
    if found is not None:
        if primary["statistic"] == "sum":
            value = found.value
        elif primary["statistic"] == "mean":
            value = found.mean
        else:
            value = _percent_of_max(defn, found, extras, code)
    return PrimaryScore(
        scale=code,
        name=names[code],
        statistic=primary["statistic"],
        label=primary["label"],
        value=value,
        band=(found.band or "") if found is not None and value is not None else "",
        prorated=bool(found is not None and value is not None and found.prorated),
    )


def _percent_of_max(defn: Mapping, found: Any, extras: Mapping | None, code: str) -> float | None:
    stored = (extras or {}).get("percent_of_max", {}).get(code)
    if stored is not None or found.mean is None:
        return stored
    lo, hi = _frac(defn["scale"]["min"]), _frac(defn["scale"]["max"])
    return _round((_frac(found.mean) - lo) / (hi - lo) * 100, 1)


# --------------------------------------------------------------------------------------------
# Change over time
# --------------------------------------------------------------------------------------------


def _check_in_range(defn: Mapping, scale_code: str, *values: float) -> None:
    if scale_code == "total":
        numbers = _scored_numbers(defn)
        lo, hi = _range_of(defn, numbers, domains=defn["scoring"].get("domains"))
    else:
        sub = next(s for s in defn["subscales"] if s["code"] == scale_code)
        lo, hi = _range_of(defn, sub["items"])
    for v in values:
        if not _is_number(v):
            raise ValueError(f"{v!r} is not a number")
        if not lo <= _frac(v) <= hi:
            raise ValueError(f"{v:g} is outside the {scale_code} range {float(lo):g}-{float(hi):g}")


def reliable_change(defn: Mapping, before: float, after: float) -> str:
    """ "improved", "no reliable change" or "deteriorated" on the ``rci_scale`` headline.

    A change counts as reliable when it is at least ``rci`` in size (``|after - before| >= rci``),
    in the direction given by ``higher_is_better``. Raises ``DefinitionError`` when the
    definition has no RCI, ``ValueError`` when a score is outside the scale's range.
    """
    rci = defn.get("rci")
    if rci is None:
        raise DefinitionError(f"{defn['code']}: no reliable change index is defined")
    _check_in_range(defn, defn.get("rci_scale", "total"), before, after)
    gain = _frac(after) - _frac(before)
    if not defn["higher_is_better"]:
        gain = -gain
    if gain >= _frac(rci):
        return "improved"
    if -gain >= _frac(rci):
        return "deteriorated"
    return "no reliable change"


def treatment_outcome(defn: Mapping, baseline: float, current: float) -> dict:
    """Response and remission per ``special.treatment_outcome`` (lower scores are better).

    Returns ``{"percent_change", "response", "remission", "remission_with_response",
    "definitions"}``; ``percent_change`` is (current - baseline) / baseline x 100 rounded to
    1 decimal (None when the baseline is 0, in which case there is no response).
    """
    spec = defn.get("special", {}).get("treatment_outcome")
    if spec is None:
        raise DefinitionError(f"{defn['code']}: no treatment outcome rule is defined")
    _check_in_range(defn, "total", baseline, current)
    b, c = _frac(baseline), _frac(current)
    min_drop = _frac(spec["response_min_drop"])
    response = b > 0 and (b - c) >= min_drop * b
    remission = c <= _frac(spec["remission_max"])
    return {
        "percent_change": None if b == 0 else _round((c - b) / b * 100, 1),
        "response": response,
        "remission": remission,
        "remission_with_response": remission and response,
        "definitions": {
            "response": f"drop of at least {float(min_drop) * 100:g}% from baseline",
            "remission": f"score of {spec['remission_max']:g} or less",
            "remission_with_response": "remission and response together",
            "source": spec.get("source", ""),
        },
    }


def hamd_outcome(baseline: float, current: float) -> dict:
    """``treatment_outcome`` for the shipped GRID-HAMD-17 definition."""
    return treatment_outcome(get_definition("grid-hamd-17"), baseline, current)
