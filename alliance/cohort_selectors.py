"""The per-patient measures cohort analytics computes over, chosen in SQL.

The page reads them from `CohortMeasures`, one row per patient that the flag recompute keeps
(`services.cohort_measures_refresh`, with `patient_measures` below); a patient without a
current row (none yet, flags stale, or a filter that leaves out some of their dosings) has
them chosen live by the same query, so the numbers never depend on whether the row is there.

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

import numpy as np
from django.db import connection
from django.db.models import Count, Max, Min

from clinic.access import patients_visible_to
from clinic.models import Patient, Program
from outcomes.models import Instrument, InstrumentVersion, Respondent, Response, Score
from sessions.models import Attendance, Session, SessionKind

from . import analytics
from .exports import pseudonyms_of
from .flag_inputs import id_array, ids_in
from .models import CohortMeasures, StalePatient

DEPRESSION_CODES = [code for code, _ in analytics.DEPRESSION_MEASURES]


@dataclass(frozen=True)
class MeasuredCohort:
    columns: analytics.Columns  # each measure over the cohort, patients by pseudonym
    patient_ids: list[int]  # in the same order
    dosings: int
    stored: int = 0  # patients whose measures came from `CohortMeasures`

    @property
    def pseudonyms(self) -> dict[int, str]:
        return dict(zip(self.patient_ids, self.columns.labels.tolist(), strict=True))

    @property
    def measures(self) -> dict[int, dict[str, float]]:
        """patient id -> measure key -> value, for the measures the patient has."""
        return {
            pid: {
                key: float(values[i])
                for key, values in self.columns.values.items()
                if not np.isnan(values[i])
            }
            for i, pid in enumerate(self.patient_ids)
        }


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
    SELECT DISTINCT ON (patient_id, code, f.measure)
           patient_id, code || ':' || f.measure AS measure, scale, response_id, value
    FROM rated
    CROSS JOIN unnest(%(follow_keys)s::text[], %(follow_days)s::int[], %(follow_half)s::int[])
         AS f(measure, days, half_width)
    WHERE code = ANY(%(depressions)s) AND scale = 'total' AND value IS NOT NULL
      AND at > last_dosing
      AND {_OFF_TARGET.format(days="f.days")} <= f.half_width * 86400
    ORDER BY patient_id, code, f.measure, {_OFF_TARGET.format(days="f.days")},
             {_EARLIEST_FIRST}
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


def _stored_key(key: str, depression: str) -> str:
    """Where a page's measure key lives in `CohortMeasures.measures`: the follow-ups are kept
    for every depression instrument, under the instrument's code."""
    return f"{depression}:{key}" if key.startswith("dep_") else key


def _page_keys() -> list[str]:
    return [
        *(f"{when}_{scale}" for when in ("prep", "week") for scale, _ in analytics.ALLIANCE_SCALES),
        "meq_peak",
        "piq_peak",
        *(key for key, _, _, _ in analytics.FOLLOW_UPS),
    ]


def _chosen(spans, *, depressions) -> dict[int, dict[str, float]]:
    """The measures of the patients in `spans` ((patient id, first dosing, last dosing)), for
    each of `depressions`: one query, then Python only for ratings whose exact mean needs
    their answers. Follow-up keys carry the instrument's code (`phq-9:dep_4w`)."""
    measures: dict[int, dict[str, float]] = {pid: {} for pid, _, _ in spans}
    if not spans:
        return measures
    codes = [*analytics.INSTRUMENTS, *depressions]
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
        "cohort": id_array(pid for pid, _, _ in spans),
        "first": [first for _, first, _ in spans],
        "last": [last for _, _, last in spans],
        "whole_versions": [version_id for version_id, _, _ in whole],
        "whole_scales": [scale for _, scale, _ in whole],
        "whole_items": [items for _, _, items in whole],
        "patient": Respondent.PATIENT.value,
        "codes": codes,
        "scales": [scale for scale, _ in analytics.ALLIANCE_SCALES],
        "alliance": "wai-sr",
        "meq": "meq-30",
        "piq": "piq",
        "depressions": list(depressions),
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
    return measures


def _attended(patients):
    """The completed dosings these patients attended."""
    return Attendance.objects.filter(
        patient__in=patients,
        session__kind=SessionKind.DOSING,
        session__status=Session.Status.COMPLETED,
    ).exclude(status__in=[Attendance.Status.ABSENT, Attendance.Status.CANCELLED])


def _span_aggregate(attended):
    """Per patient of these attendances: first and last dosing and their number."""
    return (
        attended.order_by()
        .values("patient_id")
        .annotate(
            first_dosing=Min("session__scheduled_start"),
            last_dosing=Max("session__scheduled_start"),
            dosing_count=Count("id"),
        )
    )


def _spans(attended):
    """Per patient: id, public id, number of dosings, first and last dosing."""
    return list(
        _span_aggregate(attended).values_list(
            "patient_id", "patient__public_id", "dosing_count", "first_dosing", "last_dosing"
        )
    )


@dataclass(frozen=True)
class PatientMeasures:
    first_dosing: datetime.datetime
    last_dosing: datetime.datetime
    measures: dict[str, float]  # as `CohortMeasures.measures`


def patient_measures(*, patient_ids=None, spans=None) -> dict[int, PatientMeasures]:
    """What `CohortMeasures` holds for these patients (None: every patient): their measures
    over every completed dosing they attended, for every depression instrument. Patients
    without such a dosing are left out. Two queries for any number of patients, or one where
    the caller has read the spans already (`spans`: {patient id: (first, last dosing)} of
    exactly the patients with such a dosing among `patient_ids`, as a sweep chunk's
    `flag_inputs.ChunkSchedule` has them)."""
    if spans is None:
        attended = _attended(Patient.objects.all())
        if patient_ids is not None:
            attended = attended.filter(patient_id__in=ids_in(patient_ids))
        spans = [(pid, first, last) for pid, _, _, first, last in _spans(attended)]
    else:
        spans = [(pid, first, last) for pid, (first, last) in spans.items()]
    measures = _chosen(spans, depressions=DEPRESSION_CODES)
    return {
        pid: PatientMeasures(first_dosing=first, last_dosing=last, measures=measures[pid])
        for pid, first, last in spans
    }


# The cohort's spans, each with its stored measures where the row is current (see
# `cohort_measures`); the span's dates come back only where it is not, for the live query.
# The public id as text: what the pseudonym is computed from, without a UUID object between.
_STORED_SQL = """
SELECT s.patient_id, p.public_id::text, s.dosing_count, m.patient_id IS NOT NULL,
       CASE WHEN m.patient_id IS NULL THEN s.first_dosing END,
       CASE WHEN m.patient_id IS NULL THEN s.last_dosing END,
       {measures}
FROM ({spans}) s
JOIN {patient} p ON p.id = s.patient_id
LEFT JOIN {stored} m
       ON m.patient_id = s.patient_id
      AND m.first_dosing = s.first_dosing AND m.last_dosing = s.last_dosing
      AND NOT EXISTS (
          SELECT FROM {stale} o WHERE o.patient_id = m.patient_id AND o.since >= m.computed_at
      )
"""


def cohort_measures(
    *,
    user,
    depression: str,
    program: Program | None = None,
    modality: str = "",
    start: datetime.date | None = None,
    end: datetime.date | None = None,
) -> MeasuredCohort:
    """Each patient's measures over the completed dosings they attended in the chosen
    program, modality and dates, as columns ordered by pseudonym.

    A patient's stored row (`CohortMeasures`) is used when it was taken around the same first
    and last dosing and no change to the patient has been marked in the outbox
    (`StalePatient`) since it was computed: then it holds what the live query would choose.
    The others are chosen live, in one query for all of them. So a few queries whatever the
    size of the cohort, and no Python work per patient beyond placing its values; the
    matching is done in the database, which saves reading four dates per patient."""
    attended = _attended(patients_visible_to(user))
    if program is not None:
        attended = attended.filter(session__program=program)
    if modality:
        attended = attended.filter(session__program__modality=modality)
    if start is not None:
        attended = attended.filter(session__scheduled_start__date__gte=start)
    if end is not None:
        attended = attended.filter(session__scheduled_start__date__lte=end)
    spans_sql, spans_params = (
        _span_aggregate(attended)
        .values_list("patient_id", "first_dosing", "last_dosing", "dosing_count")
        .query.sql_with_params()
    )
    keys = _page_keys()
    sql = _STORED_SQL.format(
        # NaN, not NULL, for a measure without a value: numpy turns a float into a float
        # three times faster than None into NaN, at 10,000 patients × 14 measures.
        measures=", ".join(["COALESCE((m.measures ->> %s)::float8, 'NaN')"] * len(keys)),
        spans=spans_sql,
        patient=Patient._meta.db_table,
        stored=CohortMeasures._meta.db_table,
        stale=StalePatient._meta.db_table,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*(_stored_key(key, depression) for key in keys), *spans_params])
        cohort = cursor.fetchall()
    live = _chosen(
        [(pid, first, last) for pid, _, _, stored, first, last, *_ in cohort if not stored],
        depressions=[depression],
    )

    def values_of(pid, stored, values):
        if stored:
            return values
        mine = live[pid]
        return [mine.get(_stored_key(key, depression), np.nan) for key in keys]

    labelled = sorted(
        (label, pid, stored, values)
        for label, (pid, _, _, stored, _, _, *values) in zip(
            pseudonyms_of(row[1] for row in cohort), cohort, strict=True
        )
    )
    table = np.array(
        [values_of(pid, stored, values) for _, pid, stored, values in labelled], dtype=float
    ).reshape(-1, len(keys))
    return MeasuredCohort(
        columns=analytics.Columns(
            labels=np.array([label for label, *_ in labelled], dtype=object),
            values={key: table[:, j] for j, key in enumerate(keys)},
        ),
        patient_ids=[pid for _, pid, _, _ in labelled],
        dosings=sum(row[2] for row in cohort),
        stored=sum(1 for row in cohort if row[3]),
    )
