"""The per-patient measures cohort analytics computes over, chosen in SQL.

The database picks, for each patient, the one rating each measure uses (see `analytics` for
where the study took each one), so the page reads a fixed handful of rows per patient rather
than every score in the clinic. Item means are exact, not the stored `Score.mean` (rounded to
2 decimals for display): for a complete rating of an instrument scored in whole steps the
database divides the stored sum, which is exact, by the scale's number of items; any other
chosen rating (prorated, or in fractional steps) has its mean recomputed from its answers in
Python (`analytics.exact_mean`), which needs the instrument's definition (reverse-keyed
items, per-item scales).
"""

import datetime
import json
from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, Max, Min

from clinic.access import patients_visible_to
from clinic.models import Program
from outcomes.models import Instrument, InstrumentVersion, Respondent, Response, Score
from sessions.models import Attendance, Session, SessionKind

from . import analytics
from .exports import pseudonym_of


@dataclass(frozen=True)
class CohortMeasures:
    measures: dict[int, dict[str, float]]  # patient id -> measure key -> value
    pseudonyms: dict[int, str]
    dosings: int


# Ratings that share their moment are told apart as `analytics` describes: the later session,
# then the patient's own rating before one entered for them, then the later record.
_LATEST_FIRST = "at DESC, session_at DESC, by_patient DESC, response_id DESC"
_EARLIEST_FIRST = "at, session_at, by_patient, response_id"
# Seconds from the target moment; epochs, so that "7 days" is 7 × 24 hours as in Python,
# whatever the session's time zone does with daylight saving.
_OFF_TARGET = "abs(extract(epoch FROM at) - extract(epoch FROM last_dosing) - {days} * 86400)"

_MEASURES_SQL = f"""
WITH cohort AS (
    SELECT * FROM unnest(%(cohort)s::bigint[], %(first)s::timestamptz[], %(last)s::timestamptz[])
         AS c(patient_id, first_dosing, last_dosing)
),
whole AS (
    SELECT * FROM unnest(%(whole_versions)s::bigint[], %(whole_scales)s::text[],
                         %(whole_items)s::int[]) AS w(version_id, scale, items)
),
rated AS (
    SELECT c.patient_id, c.first_dosing, c.last_dosing, i.code, s.scale, s.value, s.mean,
           CASE WHEN s.complete THEN s.value / w.items END AS exact,
           r.id AS response_id, r.administered_at AS at,
           COALESCE(ss.scheduled_start, r.administered_at) AS session_at,
           (r.respondent = %(patient)s) AS by_patient
    FROM cohort c
    JOIN {{response}} r ON r.patient_id = c.patient_id
    JOIN {{version}} v ON v.id = r.version_id
    JOIN {{instrument}} i ON i.id = v.instrument_id
    JOIN {{score}} s ON s.response_id = r.id
    LEFT JOIN {{session}} ss ON ss.id = r.session_id
    LEFT JOIN whole w ON w.version_id = r.version_id AND w.scale = s.scale
    WHERE i.code = ANY(%(codes)s) AND s.scale = ANY(%(scales)s)
),
preparation AS (
    SELECT DISTINCT ON (patient_id, scale)
           patient_id, 'prep_' || scale AS measure, scale, response_id, exact AS value
    FROM rated
    WHERE code = %(alliance)s AND mean IS NOT NULL AND at < first_dosing
    ORDER BY patient_id, scale, {_LATEST_FIRST}
),
week_after AS (
    SELECT DISTINCT ON (patient_id, scale)
           patient_id, 'week_' || scale AS measure, scale, response_id, exact AS value
    FROM rated
    WHERE code = %(alliance)s AND mean IS NOT NULL AND at > last_dosing
      AND {_OFF_TARGET.format(days="%(week_days)s")} <= %(week_half)s * 86400
    ORDER BY patient_id, scale, {_OFF_TARGET.format(days="%(week_days)s")}, {_EARLIEST_FIRST}
),
follow_up AS (
    SELECT DISTINCT ON (patient_id, f.measure)
           patient_id, f.measure, scale, response_id, value
    FROM rated
    CROSS JOIN unnest(%(follow_keys)s::text[], %(follow_days)s::int[], %(follow_half)s::int[])
         AS f(measure, days, half_width)
    WHERE code = %(depression)s AND scale = 'total' AND value IS NOT NULL
      AND at > last_dosing
      AND {_OFF_TARGET.format(days="f.days")} <= f.half_width * 86400
    ORDER BY patient_id, f.measure, {_OFF_TARGET.format(days="f.days")}, {_EARLIEST_FIRST}
),
peak AS (
    -- Every rating with the highest rounded mean: the exact highest is among them, since
    -- rounding never reverses an order; Python picks it from their answers.
    SELECT patient_id, measure, scale, response_id, exact AS value
    FROM (
        SELECT patient_id, scale, response_id, exact,
               CASE code WHEN %(meq)s THEN 'meq_peak' ELSE 'piq_peak' END AS measure,
               rank() OVER (PARTITION BY patient_id, code ORDER BY mean DESC) AS place
        FROM rated
        WHERE code IN (%(meq)s, %(piq)s) AND scale = 'total' AND mean IS NOT NULL
          AND at >= first_dosing
    ) ranked
    WHERE place = 1
)
-- Answers only where the exact mean could not be had from a stored sum (see `whole`): in a
-- lateral subquery the condition gates the lookup, where a join looked up every row.
SELECT chosen.patient_id, chosen.measure, chosen.scale, chosen.value, r.version_id, r.answers
FROM (
    SELECT * FROM preparation UNION ALL SELECT * FROM week_after
    UNION ALL SELECT * FROM follow_up UNION ALL SELECT * FROM peak
) chosen
LEFT JOIN LATERAL (
    SELECT version_id, answers FROM {{response}}
    WHERE id = chosen.response_id AND chosen.value IS NULL
    OFFSET 0  -- keeps the planner from turning it back into a join
) r ON true
"""


def cohort_measures(
    *,
    user,
    depression: str,
    program: Program | None = None,
    modality: str = "",
    start: datetime.date | None = None,
    end: datetime.date | None = None,
) -> CohortMeasures:
    """Each patient's measures over the completed dosings they attended in the chosen
    program, modality and dates: three queries, whatever the size of the cohort, and no
    Python work per patient beyond reading its chosen values."""
    attended = Attendance.objects.filter(
        patient__in=patients_visible_to(user),
        session__kind=SessionKind.DOSING,
        session__status=Session.Status.COMPLETED,
    ).exclude(status__in=[Attendance.Status.ABSENT, Attendance.Status.CANCELLED])
    if program is not None:
        attended = attended.filter(session__program=program)
    if modality:
        attended = attended.filter(session__program__modality=modality)
    if start is not None:
        attended = attended.filter(session__scheduled_start__date__gte=start)
    if end is not None:
        attended = attended.filter(session__scheduled_start__date__lte=end)
    per_patient = (
        attended.order_by()
        .values("patient_id")
        .annotate(
            first_dosing=Min("session__scheduled_start"),
            last_dosing=Max("session__scheduled_start"),
            dosing_count=Count("id"),
        )
    )
    cohort = list(
        per_patient.values_list(
            "patient_id", "patient__public_id", "dosing_count", "first_dosing", "last_dosing"
        )
    )
    pseudonyms = {pid: pseudonym_of(public_id) for pid, public_id, *_ in cohort}
    measures: dict[int, dict[str, float]] = {pid: {} for pid in pseudonyms}
    if not cohort:
        return CohortMeasures(measures={}, pseudonyms={}, dosings=0)

    codes = [*analytics.INSTRUMENTS, depression]
    definitions = dict(
        InstrumentVersion.objects.filter(instrument__code__in=codes).values_list("pk", "definition")
    )
    whole = [
        (version_id, scale, items)
        for version_id, definition in definitions.items()
        for scale, items in analytics.whole_scale_items(definition).items()
    ]
    params = {
        # The cohort goes in as arrays, so that the database does not aggregate it twice.
        "cohort": [row[0] for row in cohort],
        "first": [row[3] for row in cohort],
        "last": [row[4] for row in cohort],
        "whole_versions": [version_id for version_id, _, _ in whole],
        "whole_scales": [scale for _, scale, _ in whole],
        "whole_items": [items for _, _, items in whole],
        "patient": Respondent.PATIENT.value,
        "codes": codes,
        "scales": [scale for scale, _ in analytics.ALLIANCE_SCALES],
        "alliance": "wai-sr",
        "meq": "meq-30",
        "piq": "piq",
        "depression": depression,
        "week_days": analytics.WEEK_AFTER[0],
        "week_half": analytics.WEEK_AFTER[1],
        "follow_keys": [key for key, _, _, _ in analytics.FOLLOW_UPS],
        "follow_days": [days for _, _, days, _ in analytics.FOLLOW_UPS],
        "follow_half": [half for _, _, _, half in analytics.FOLLOW_UPS],
    }
    sql = _MEASURES_SQL.format(
        response=Response._meta.db_table,
        version=InstrumentVersion._meta.db_table,
        instrument=Instrument._meta.db_table,
        score=Score._meta.db_table,
        session=Session._meta.db_table,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        chosen = cursor.fetchall()

    for pid, measure, scale, value, version_id, answers in chosen:
        if value is None:
            # Django reads jsonb from a raw cursor as text, as its JSONField does before decoding.
            value = analytics.exact_mean(definitions[version_id], json.loads(answers), scale)
            if value is None:
                continue
        if measure.endswith("_peak") and measure in measures[pid]:
            value = max(value, measures[pid][measure])
        measures[pid][measure] = value
    return CohortMeasures(
        measures=measures,
        pseudonyms=pseudonyms,
        dosings=sum(row[2] for row in cohort),
    )
