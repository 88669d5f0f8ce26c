"""Flag evidence in plain words for the flag page and the e-mail. Every number says what it
is, as the instruments' primary scores do: the WAI-SR bond and total are item means, the SRS
a sum."""

import datetime

from django.utils import timezone
from django.utils.dateformat import format as date_format

from .rules import Kind, Severity


def _day(iso: str | None) -> str:
    if not iso:
        return "an unknown date"
    moment = timezone.localtime(datetime.datetime.fromisoformat(iso))
    return date_format(moment, "j M")


def _at(label: str) -> str:
    return f" at {label}" if label else ""


def ordinal(value: float) -> str:
    """8 -> "8th", 21.4 -> "21st", 12 -> "12th" (rounded to a whole percentile)."""
    n = round(value)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _num(value) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _days(moments: list[str]) -> str:
    days = [_day(moment) for moment in moments]
    return days[0] if len(days) == 1 else ", ".join(days[:-1]) + " and " + days[-1]


def summarise(kind: str, evidence: dict) -> str:
    dosing = f"; dosing on {_day(evidence['dosing_at'])}" if evidence.get("dosing_at") else ""
    if len(evidence.get("dosings", [])) > 1:
        dosing = f"; dosings on {_days([d['at'] for d in evidence['dosings']])}"
    if kind == Kind.WEAK_BOND:
        limit = f"below {_num(evidence['threshold'])}"
        if evidence.get("clinic_percentile") is not None:
            limit += (
                f" or the clinic's {evidence['percentile']}th percentile "
                f"({evidence['clinic_percentile']:.2f})"
            )
        return (
            f"Bond mean {_num(evidence['bond'])}{_at(evidence.get('session_label', ''))} on "
            f"{_day(evidence['rated_at'])}, {limit}{dosing}"
        )
    if kind == Kind.BOND_DROP:
        return (
            f"Bond mean fell from {_num(evidence['bond_before'])} "
            f"({_day(evidence['before_at'])}) to "
            f"{_num(evidence['bond_after'])} ({_day(evidence['after_at'])}), a fall of "
            f"{_num(evidence['fall'])}, more than the reliable change of "
            f"{_num(evidence['rci'])}{dosing}"
        )
    if kind == Kind.ALLIANCE_MISSING:
        since = (
            f"since the last preparation session on {_day(evidence['last_preparation_at'])}"
            if evidence.get("last_preparation_at")
            else "at all"
        )
        return f"No alliance rating {since}; dosing on {_day(evidence['dosing_at'])}"
    if kind == Kind.LOW_ALLIANCE:
        parts = []
        for reason in evidence.get("reasons", []):
            when = f"{_at(reason.get('session_label', ''))} on {_day(reason['rated_at'])}"
            if reason["measure"] == "srs":
                parts.append(
                    f"SRS sum {_num(reason['value'])}{when}, below {_num(reason['threshold'])}"
                )
            elif reason["measure"] == "srs_drop":
                parts.append(
                    f"SRS sum fell from {_num(reason['previous'])} to {_num(reason['value'])}{when}"
                )
            else:
                parts.append(
                    f"WAI-SR total mean {_num(reason['value'])}{when}, "
                    f"below {_num(reason['threshold'])}"
                )
        return "; ".join(parts) + dosing
    if kind == Kind.OFF_TRACK:
        text = (
            f"Bond {evidence['bond']:.1f} at {evidence['step'].lower()}: "
            f"{ordinal(evidence['percentile_rank'])} percentile of {evidence['n']} earlier "
            f"patients at this step (below their {ordinal(evidence['percentile'])}, "
            f"{evidence['cut']:.2f})"
        )
        fell = evidence.get("fell_from")
        if fell:
            text += (
                f"; down from {fell['bond']:.1f} at {fell['step'].lower()} "
                f"({ordinal(fell['percentile_rank'])} percentile)"
            )
        return text + dosing
    if kind == Kind.SAFETY:
        hits = [
            f"{h['instrument'].upper()} item {h['item']} answered {_num(h['value'])} on "
            f"{_day(h['at'])}"
            for h in evidence.get("hits", [])
        ]
        return "Safety item: " + "; ".join(hits) + ". Contact the patient today."
    if kind == Kind.SAFETY_UNANSWERED:
        gaps = [
            f"{g['instrument'].upper()} item {g['item']} left unanswered on {_day(g['at'])}"
            + (" (a prorated total was still given)" if g.get("total_given") else "")
            for g in evidence.get("gaps", [])
        ]
        return "Safety item skipped: " + "; ".join(gaps) + ". Ask the patient about it."
    if kind == "serious_adverse_event":
        events = [
            f"{e['grade'].replace('_', '-')} event from {_day(e['onset_at'])}: {e['description']}"
            for e in evidence.get("events", [])
        ]
        return "Serious adverse event, not yet closed: " + "; ".join(events) + "."
    return ""


def severity_reason(kind: str, severity: str, evidence: dict) -> str:
    """Why the flag has its severity, in the words of the rule that set it (alliance/rules.py);
    the page puts "Why high:" before it."""
    if kind == Kind.WEAK_BOND:
        if severity == Severity.HIGH:
            return (
                "The bond is more than 0.5 below the threshold of "
                f"{_num(evidence['threshold'])}, with a dosing coming."
            )
        if evidence["bond"] >= evidence["threshold"]:
            return (
                "The bond is at or above the threshold, but below the clinic's "
                f"{ordinal(evidence['percentile'])} percentile."
            )
        return (
            f"The bond is below the threshold of {_num(evidence['threshold'])} by 0.5 "
            "or less (more than 0.5 below would be high)."
        )
    if kind == Kind.BOND_DROP:
        return "A fall larger than chance, whatever the level the bond fell to."
    if kind == Kind.ALLIANCE_MISSING:
        return (
            f"A dosing within {_num(evidence.get('hours', 72))} hours with nothing to tell "
            "how the alliance stands."
        )
    if kind == Kind.LOW_ALLIANCE:
        return "A rating below the program's threshold, at any session."
    if kind == Kind.SAFETY:
        return "A safety question answered above 0 is acted on the same day."
    if kind == Kind.SAFETY_UNANSWERED:
        return "A safety question left blank cannot be taken as a no."
    if kind == Kind.OFF_TRACK:
        if severity == Severity.HIGH:
            return (
                "The bond was still at or above the 25th percentile at the step before, "
                "so it fell off track."
            )
        return (
            "Below the clinic's own patients at this step, and not at or above the 25th "
            "percentile at the step before either (or there was no step before)."
        )
    if kind == Kind.ADVERSE_EVENT:
        return "A serious adverse event is reviewed at once."
    return ""


def response_ids(evidence) -> list[int]:
    """Every rating the evidence names, in the order it names them."""
    found: list[int] = []
    if isinstance(evidence, dict):
        for key, value in evidence.items():
            if key == "response_id" and isinstance(value, int):
                found.append(value)
            elif key == "response_ids" and isinstance(value, list):
                found.extend(v for v in value if isinstance(v, int))
            else:
                found.extend(response_ids(value))
    elif isinstance(evidence, list):
        for value in evidence:
            found.extend(response_ids(value))
    return list(dict.fromkeys(found))
