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

from django.db import connection, transaction
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
WITH cohort (patient_id, public_id, first_dosing, last_dosing, dosing_count) AS (
    {{cohort}}
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
-- Every cohort patient comes back, with no measure when none was chosen, so the cohort is
-- aggregated once, here, rather than read into Python and sent back.
SELECT c.patient_id, c.public_id, c.dosing_count,
       chosen.measure, chosen.scale, chosen.value, r.version_id, r.answers
FROM cohort c
LEFT JOIN (
    SELECT * FROM preparation UNION ALL SELECT * FROM week_after
    UNION ALL SELECT * FROM follow_up UNION ALL SELECT * FROM peak
) chosen ON chosen.patient_id = c.patient_id
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
    program, modality and dates: two queries, whatever the size of the cohort, and no
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
    # Plain fields first, then the aggregates in order: the column order `cohort` names.
    cohort_sql, cohort_params = per_patient.values(
        "patient_id", "patient__public_id", "first_dosing", "last_dosing", "dosing_count"
    ).query.sql_with_params()
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
    # The ORM's subquery uses positional %s; name its parameters so both styles do not mix.
    names = [f"cohort_{n}" for n in range(len(cohort_params))]
    params.update(zip(names, cohort_params, strict=True))
    sql = _MEASURES_SQL.format(
        cohort=cohort_sql % tuple(f"%({name})s" for name in names),
        response=Response._meta.db_table,
        version=InstrumentVersion._meta.db_table,
        instrument=Instrument._meta.db_table,
        score=Score._meta.db_table,
        session=Session._meta.db_table,
    )
    with transaction.atomic(), connection.cursor() as cursor:
        # The planner overestimates the cohort, so the plan costs enough to be JIT-compiled:
        # seconds of compiling for a query that runs in well under one. The per-measure
        # sorts of a large cohort spill to disk at the default work_mem.
        cursor.execute("SET LOCAL jit = off")
        cursor.execute("SET LOCAL work_mem = '32MB'")
        cursor.execute(sql, params)
        chosen = cursor.fetchall()

    measures: dict[int, dict[str, float]] = {}
    pseudonyms: dict[int, str] = {}
    dosings = 0
    for pid, public_id, dosing_count, measure, scale, value, version_id, answers in chosen:
        if pid not in pseudonyms:
            pseudonyms[pid] = pseudonym_of(public_id)
            measures[pid] = {}
            dosings += dosing_count
        if measure is None:
            continue
        if value is None:
            # Django reads jsonb from a raw cursor as text, as its JSONField does before decoding.
            value = analytics.exact_mean(definitions[version_id], json.loads(answers), scale)
            if value is None:
                continue
        if measure.endswith("_peak") and measure in measures[pid]:
            value = max(value, measures[pid][measure])
        measures[pid][measure] = value
    return CohortMeasures(measures=measures, pseudonyms=pseudonyms, dosings=dosings)
