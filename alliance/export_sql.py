"""The CSV exports' text, written by PostgreSQL: one statement per batch of patients returns
each patient's lines, already formatted exactly as Python's `csv` module wrote them before
(`\\r\\n` line ends, quotes only around a comma, a quote or a line break, `repr` of floats for
the sum and mean, the primary score as `PrimaryScore.shown`), with text a spreadsheet would run
prefixed by a quote (`exports.neutralise`).

Only cells that come from the patients' own data are formatted in SQL; everything that comes
from an instrument definition (codes, versions, statistics, scale and column names, which
columns a scale fills) arrives as small arrays formatted in Python, so the definitions' rules
stay in one place.

PostgreSQL's own CSV writer is not used: it ends lines with `\\n` and quotes empty strings, so
the file would change. Each patient's lines leave as one bytea value of a binary COPY, which
needs no quoting or escaping on the way out.

Each patient's lines come from a subquery that reads that patient's responses and scores by
index and sorts only them: nothing sorts or hashes the whole batch, let alone the clinic.
"""

from clinic.models import Enrolment, Patient
from outcomes.models import Response, Score
from sessions.models import Session

from .models import WideBuild, WideChange, WideLine

# A spreadsheet runs a text cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

_TABLES = {
    "patient": Patient._meta.db_table,
    "enrolment": Enrolment._meta.db_table,
    "response": Response._meta.db_table,
    "score": Score._meta.db_table,
    "session": Session._meta.db_table,
    "wide_build": WideBuild._meta.db_table,
    "wide_line": WideLine._meta.db_table,
    "wide_change": WideChange._meta.db_table,
}


def _sql_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return "E'" + escaped.replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n") + "'"


_STARTS = ", ".join(_sql_string(c) for c in FORMULA_STARTS)
_QUOTED = " OR ".join(f"strpos({{0}}, {_sql_string(c)}) > 0" for c in (",", '"', "\n", "\r"))


def text_cell(expr: str) -> str:
    """A text cell as `csv` wrote `neutralise(value)`; NULL as an empty cell. The quote that
    neutralises needs no quoting itself, so whether to quote is read from the value alone
    (strpos: far cheaper than a regular expression)."""
    prefix = f"(CASE WHEN left({expr}, 1) IN ({_STARTS}) THEN '''' ELSE '' END)"
    return f"""(CASE WHEN {expr} IS NULL THEN ''
        WHEN {_QUOTED.format(expr)} THEN '"' || replace({prefix} || {expr}, '"', '""') || '"'
        ELSE {prefix} || {expr} END)"""


def float_cell(expr: str) -> str:
    """A float8 as `csv` wrote it (Python's `repr`), NULL as an empty cell. PostgreSQL prints
    the same shortest digits (extra_float_digits >= 1, the default) but leaves off ".0" and
    switches to an exponent one power of ten earlier; whole numbers, the usual case, go the
    cheap way through bigint."""
    return f"""(CASE
        WHEN {expr} IS NULL THEN ''
        WHEN {expr} = trunc({expr}) AND abs({expr}) < 1e16 THEN
            CASE WHEN {expr} = 0 AND {expr}::text = '-0' THEN '-0.0'
                 ELSE {expr}::bigint::text || '.0' END
        WHEN abs({expr}) < 1e15 THEN {expr}::text
        WHEN abs({expr}) < 1e16 THEN {expr}::text::numeric::text
        WHEN {expr} = 'NaN' THEN 'nan'
        WHEN {expr} = 'Infinity' THEN 'inf'
        WHEN {expr} = '-Infinity' THEN '-inf'
        ELSE {expr}::text END)"""


def shown(expr: str) -> str:
    """A float8 as `PrimaryScore.shown` prints it: every digit of its shortest form, never an
    exponent, no trailing zeros; NULL stays NULL."""
    return f"""(CASE
        WHEN {expr} = trunc({expr}) AND abs({expr}) < 1e16 THEN
            CASE WHEN {expr} = 0 AND {expr}::text = '-0' THEN '-0' ELSE {expr}::bigint::text END
        WHEN abs({expr}) >= 1e-4 AND abs({expr}) < 1e15 THEN {expr}::text
        ELSE trim_scale({expr}::text::numeric)::text END)"""


def _batch(*, identified: bool) -> str:
    """The batch's patients in order (`n`), with the cells that name them (`who`) and the
    first day of their first enrolment; then every instrument version's scales."""
    who = "b.pseudonym"
    if identified:
        who += f""" || ',' || {text_cell("p.record_number")}
                   || ',' || {text_cell("p.first_name || ' ' || p.last_name")}"""
    return f"""
    batch AS MATERIALIZED (
        SELECT b.n, b.patient_id, {who} AS who,
               (SELECT min(e.start_date) FROM {_TABLES["enrolment"]} e
                 WHERE e.patient_id = b.patient_id) AS enrolled_on
          FROM unnest(%(patient_ids)s::bigint[], %(pseudonyms)s::text[])
               WITH ORDINALITY AS b(patient_id, pseudonym, n)
          JOIN {_TABLES["patient"]} p ON p.id = b.patient_id
    ),
    scales AS MATERIALIZED (
        SELECT * FROM unnest(
            %(version_ids)s::bigint[], %(scales)s::text[], %(statistics)s::text[],
            %(lows)s::numeric[], %(highs)s::numeric[], %(leading)s::text[],
            %(statistic_cells)s::text[],
            %(value_cols)s::text[], %(band_cols)s::text[], %(prorated_cols)s::text[]
        ) AS s(version_id, scale, statistic, low, high, leading_cells, statistic_cell,
               value_col, band_col, prorated_col)
    )"""


def _leading(*, identified: bool, day_on: str, kind: str, label: str) -> str:
    """The cells a line starts with (who, date, day, session kind and label), from the batch's
    `b.who` and `b.enrolled_on` and the given day, session kind and label."""
    dated = f"|| ',' || to_char({day_on}, 'YYYY-MM-DD')" if identified else ""
    return f"""(b.who {dated} || ',' || coalesce(({day_on} - b.enrolled_on)::text, '')
               || ',' || {text_cell(kind)} || ',' || {text_cell(label)})"""


def _cells(*, identified: bool) -> str:
    """One row per score of the patient `b`: the cells its line starts with (`base`: who,
    date, day, session kind and label, and the day, kind and label themselves), its time point
    for the wide form (a session's label, else "day N"), and its own cells, `shown_cell` being
    the primary score as pages show it.

    Each step is a subquery fenced with OFFSET 0: without the fence the planner pastes an
    expression into every place that names it, and the primary score would be worked out a
    few dozen times per score instead of once. Scores are fetched by their response before
    their scale is looked up: left to itself the planner pairs each response with every scale
    of its instrument and probes for each pair, nearly twice the index lookups."""
    day = "coalesce((d.day_on - b.enrolled_on)::text, '')"
    base = _leading(identified=identified, day_on="d.day_on", kind="se.kind", label="se.label")
    return f"""
        SELECT c.*,
               CASE WHEN c.shown IS NULL THEN ''
                    WHEN left(c.shown, 1) = '-' THEN '''' || c.shown
                    ELSE c.shown END AS shown_cell,
               CASE WHEN c.shown IS NULL THEN '' ELSE {text_cell("c.band")} END AS band_cell,
               CASE WHEN c.shown IS NOT NULL AND c.prorated THEN '1' ELSE '0' END
                   AS prorated_cell
          FROM (
            SELECT v.*, {shown("v.primary_value")} AS shown
              FROM (
                SELECT r.administered_at, r.score_id, r.value, r.mean, r.band,
                       r.prorated, r.base, r.point, r.day_on, r.kind, r.label,
                       s.leading_cells, s.statistic_cell,
                       s.value_col, s.band_col, s.prorated_col,
                       CASE s.statistic
                           WHEN 'sum' THEN r.value
                           WHEN 'mean' THEN r.mean
                           -- percent of maximum: as stored when scored, else from the mean
                           ELSE coalesce(
                               (r.extras -> 'percent_of_max' ->> r.scale)::float8,
                               round(round(r.mean::text::numeric - s.low, 40) * 100
                                     / (s.high - s.low), 1)::float8)
                       END AS primary_value
                  FROM (
                  SELECT r.*, sc.id AS score_id, sc.scale, sc.value, sc.mean, sc.band, sc.prorated
                    FROM (
                    SELECT r.id, r.version_id, r.extras, r.administered_at, d.day_on,
                           se.kind, se.label,
                           {base} AS base,
                           coalesce(nullif(se.label, ''), 'day ' || {day}) AS point
                      FROM {_TABLES["response"]} r
                      LEFT JOIN {_TABLES["session"]} se ON se.id = r.session_id
                     CROSS JOIN LATERAL (
                           SELECT (r.administered_at AT TIME ZONE %(time_zone)s)::date AS day_on
                     ) d
                     WHERE r.patient_id = b.patient_id
                    OFFSET 0
                  ) r
                  JOIN {_TABLES["score"]} sc ON sc.response_id = r.id
                  OFFSET 0
                  ) r
                  JOIN scales s ON s.version_id = r.version_id AND s.scale = r.scale
                OFFSET 0
              ) v
            OFFSET 0
          ) c
        OFFSET 0"""


def long_statement(*, identified: bool) -> str:
    """Each patient's long-form lines (one per score, by time then score) as one bytea row,
    in batch order; NULL for a patient without scores."""
    return f"""
    COPY (
        WITH {_batch(identified=identified)}
        SELECT convert_to((
                   SELECT string_agg(
                       base || ',' || leading_cells || ',' || shown_cell || ',' || statistic_cell
                       || ',' || band_cell || ',' || prorated_cell
                       || ',' || {float_cell("value")} || ',' || {float_cell("mean")}
                       || E'\\r\\n',
                       '' ORDER BY administered_at, score_id)
                     FROM ({_cells(identified=identified)}) c
               ), 'UTF8')
          FROM batch b
         ORDER BY b.n
    ) TO STDOUT (FORMAT binary)"""


def _points(*, identified: bool) -> str:
    """One row per time point of the patient `b`, in no particular order: its place in the
    patient's lines (`first_at`, `first_score`), the day, session kind and label its leading
    cells come from (its first score's), and `filled`, each wide column's cell by name, from
    the last score that fills it.

    A time point is one window, ordered by time then score: its first row gives the leading
    cells and the JSON object takes each column's cells in that order, so the last one stays.
    One sort per patient serves them all, where ordered aggregates sort each time point once
    per aggregate (PostgreSQL 15); the window's ORDER BY, not the order rows happen to arrive
    in, decides."""
    return f"""
        SELECT first_at, first_score, day_on, kind, label, filled
          FROM (
              SELECT first_value(c.administered_at) OVER point AS first_at,
                     first_value(c.score_id) OVER point AS first_score,
                     first_value(c.day_on) OVER point AS day_on,
                     first_value(c.kind) OVER point AS kind,
                     first_value(c.label) OVER point AS label,
                     jsonb_object_agg(f.col, f.cell) OVER point AS filled,
                     row_number() OVER point AS nth
                FROM ({_cells(identified=identified)}) c
               CROSS JOIN LATERAL (VALUES (c.value_col, c.shown_cell),
                                          (c.band_col, c.band_cell),
                                          (c.prorated_col, c.prorated_cell)
                     ) AS f(col, cell)
               WHERE f.col IS NOT NULL
              -- "C": a time point is equal labels, compared byte by byte
              WINDOW point AS (PARTITION BY c.point COLLATE "C"
                               ORDER BY c.administered_at, c.score_id
                               ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
          ) points
         WHERE nth = 1"""


def _line(*, identified: bool, columns: list[str], row: str) -> str:
    """A wide line from a time point `row` (as `_points` gives it, stored or live)."""
    leading = _leading(
        identified=identified, day_on=f"{row}.day_on", kind=f"{row}.kind", label=f"{row}.label"
    )
    cells = " || ',' || ".join(
        f"coalesce({row}.filled ->> {_sql_string(name)}, '')" for name in columns
    )
    return f"{leading} || ',' || {cells} || E'\\r\\n'"


def fresh_lines(patient: str) -> str:
    """Whether the patient's stored wide lines (`WideLine`) say what the live query would:
    built for this time zone, and no change to the patient's answers, scores, sessions or
    enrolments recorded (`WideChange`, by trigger) that this statement can see. A build
    clears exactly the changes it read, in the statement that stores the lines, so a change
    that committed while it ran stays recorded."""
    return f"""(EXISTS (
            SELECT FROM {_TABLES["wide_build"]} w
             WHERE w.patient_id = {patient} AND w.time_zone = %(time_zone)s)
        AND NOT EXISTS (
            SELECT FROM {_TABLES["wide_change"]} ch WHERE ch.patient_id = {patient}))"""


def wide_statement(*, identified: bool, columns: list[str]) -> str:
    """Each patient's wide-form lines as one bytea row, in batch order: one line per time
    point, in the order each first appears, with the given columns after the leading ones.

    A patient's time points are read from the stored `WideLine` rows where they are fresh
    (`fresh_lines`), and pivoted from their scores otherwise: the pivot is most of the cost
    of this export, and both give the same text. The leading cells are formatted once per
    line, not once per response."""
    stored = _line(identified=identified, columns=columns, row="w")
    live = _line(identified=identified, columns=columns, row="p")
    return f"""
    COPY (
        WITH {_batch(identified=identified)}
        SELECT convert_to(CASE WHEN {fresh_lines("b.patient_id")} THEN (
                   SELECT string_agg({stored}, '' ORDER BY w.first_at, w.first_score)
                     FROM {_TABLES["wide_line"]} w
                    WHERE w.patient_id = b.patient_id)
               ELSE (
                   SELECT string_agg({live}, '' ORDER BY p.first_at, p.first_score)
                     FROM ({_points(identified=identified)}) p)
               END, 'UTF8')
          FROM batch b
         ORDER BY b.n
    ) TO STDOUT (FORMAT binary)"""


def wide_lines_build() -> str:
    """Store the batch's time points as the live wide export pivots them (`WideLine`, with
    no names, for the given time zone) and their scores counted (`WideBuild`), and clear
    the changes they include (`WideChange`).

    One statement, so that all of it reads one snapshot: the changes it clears are exactly
    those whose rows it pivoted, and a change that commits while it runs stays recorded for
    the next build. The delete does not see the lines this statement inserts."""
    return f"""
        WITH {_batch(identified=False)},
        built AS MATERIALIZED (
            SELECT b.patient_id, p.first_at, p.first_score, p.day_on, p.kind, p.label, p.filled
              FROM batch b
             CROSS JOIN LATERAL ({_points(identified=False)}) p
        ),
        gone AS (
            DELETE FROM {_TABLES["wide_line"]} WHERE patient_id IN (SELECT patient_id FROM batch)
        ),
        lines AS (
            INSERT INTO {_TABLES["wide_line"]}
                   (patient_id, first_at, first_score, day_on, kind, label, filled)
            SELECT patient_id, first_at, first_score, day_on, kind, label, filled FROM built
        ),
        builds AS (
            INSERT INTO {_TABLES["wide_build"]} (patient_id, time_zone, built_at, scores)
            SELECT b.patient_id, %(time_zone)s, now(), coalesce((
                       SELECT jsonb_object_agg(k.key, k.scores)
                         FROM (SELECT r.version_id || ':' || sc.scale AS key, count(*) AS scores
                                 FROM {_TABLES["response"]} r
                                 JOIN {_TABLES["score"]} sc ON sc.response_id = r.id
                                WHERE r.patient_id = b.patient_id
                                GROUP BY 1) k), '{{}}')
              FROM batch b
            ON CONFLICT (patient_id) DO UPDATE
               SET time_zone = EXCLUDED.time_zone, built_at = EXCLUDED.built_at,
                   scores = EXCLUDED.scores
        )
        DELETE FROM {_TABLES["wide_change"]} WHERE patient_id IN (SELECT patient_id FROM batch)"""


def present(visible: str) -> str:
    """How many scores of each instrument version and scale ("version_id:scale") the
    patients of the subquery `visible` (one column of patient ids) have: counted when their
    lines were built where those are fresh, counted from their scores otherwise. Which
    patients are fresh is settled first, so that only the others' scores are read."""
    return f"""
        WITH visible (id) AS MATERIALIZED ({visible}),
        judged AS MATERIALIZED (SELECT v.id, {fresh_lines("v.id")} AS fresh FROM visible v)
        SELECT key, sum(scores)::bigint FROM (
            SELECT k.key, k.value::bigint AS scores
              FROM judged j
              JOIN {_TABLES["wide_build"]} w ON w.patient_id = j.id
             CROSS JOIN LATERAL jsonb_each_text(w.scores) k
             WHERE j.fresh
            UNION ALL
            SELECT r.version_id || ':' || sc.scale, count(*)
              FROM judged j
              JOIN {_TABLES["response"]} r ON r.patient_id = j.id
              JOIN {_TABLES["score"]} sc ON sc.response_id = r.id
             WHERE NOT j.fresh
             GROUP BY 1
        ) counted
        GROUP BY 1"""
