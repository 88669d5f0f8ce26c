"""iCalendar (RFC 5545) for a coach's sessions, written by hand: it is a small format.

No patient names leave the clinic this way. By default an event says only "<clinic> session",
the time and the room; a coach who opts in (CalendarFeed.show_details) also gets the session
kind or label and the record number (or the group program's name).
"""

import datetime

from django.conf import settings


def _escape(text: str) -> str:
    """TEXT value escaping; CR, LF and CRLF all become the two characters \\n, so a value
    can never end a line and start a property of its own."""
    text = text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return text.replace("\r\n", "\\n").replace("\r", "\\n").replace("\n", "\\n")


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


def _summary(session, *, show_details: bool) -> str:
    if not show_details:
        return f"{settings.CLINIC_NAME} session"
    who = (
        f"record {session.enrolment.patient.record_number}"
        if session.enrolment
        else f"group: {session.program.name}"
    )
    return f"{session.label or session.get_kind_display()} ({who})"


def ics_for(*, coach, sessions, show_details: bool = False) -> str:
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
        summary = _summary(session, show_details=show_details)
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
