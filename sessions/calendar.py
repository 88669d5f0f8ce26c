"""iCalendar (RFC 5545) for a coach's sessions, written by hand: it is a small format.

No patient names leave the clinic this way: events say the session kind and the record number.
"""

import datetime

from django.conf import settings


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _fold(line: str) -> str:
    """Lines longer than 75 octets continue on the next line after CRLF and a space."""
    raw = line.encode()
    if len(raw) <= 75:
        return line
    parts, current = [], b""
    for char in line:
        encoded = char.encode()
        if len(current) + len(encoded) > (75 if not parts else 74):
            parts.append(current.decode())
            current = b""
        current += encoded
    parts.append(current.decode())
    return "\r\n ".join(parts)


def _utc(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def ics_for(*, coach, sessions) -> str:
    now = _utc(datetime.datetime.now(datetime.UTC))
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:-//{_escape(settings.CLINIC_NAME)}//Rapport sessions//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{_escape(settings.CLINIC_NAME)} sessions",
    ]
    for session in sessions:
        who = (
            f"record {session.enrolment.patient.record_number}"
            if session.enrolment
            else f"group: {session.program.name}"
        )
        summary = f"{session.label or session.get_kind_display()} ({who})"
        lines += [
            "BEGIN:VEVENT",
            f"UID:{session.public_id}@rapport",
            f"DTSTAMP:{now}",
            f"DTSTART:{_utc(session.scheduled_start)}",
            f"DTEND:{_utc(session.scheduled_end)}",
            f"SUMMARY:{_escape(summary)}",
        ]
        if session.room:
            lines.append(f"LOCATION:{_escape(session.room.name)}")
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return "\r\n".join(_fold(line) for line in lines) + "\r\n"
