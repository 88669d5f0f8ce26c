"""Property-based fuzz of every form field and every query parameter the views read.

For each URL pattern the fields are found by asking the page itself (as an admin, who may use
every form): the query parameters it reads (recorded while it answers) and the fields of the
forms it renders. Hypothesis then sends GETs and POSTs with random values (NUL bytes, huge
strings, unicode, numbers, dates from year 1 to 9999, and the form's own choices so that
requests get past the form and into the services). Every example runs in a savepoint that is
rolled back, so each starts from the same database.

Properties: nothing answers 500, and a POST that is refused (an error status or the form shown
again with errors) leaves every table as it was.
"""

import contextlib
import datetime
from decimal import Decimal

import pytest
from django import forms
from django.db import transaction
from django.http import QueryDict
from django.test import Client
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from . import catalogue
from .conftest import COUNTS

pytestmark = pytest.mark.django_db

EXAMPLES = 25
# Not fuzzed, and why.
NOT_FUZZED = {
    "logout": "signing out has no input",
    "favicon.ico": "a redirect with no input",
    "healthz": "reads no input",
}
TARGETS = [p for p in catalogue.patterns() if p.name not in NOT_FUZZED]

# Sent to every query parameter (and the first two to every form field at once) each run.
KNOWN_ATTACKS = ["\x00", "a" * 10_000, "9999-W52", "0001-W01", "abc", "-1"]

NASTY_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="\x00\t\n <>'\";%&é漢😀\u202e", max_size=20),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "a\x00b",
            "a" * 10_000,
            "x " * 5_000,
            "9" * 400,
            "-1",
            "0",
            "1e309",
            "NaN",
            "-Infinity",
            "abc",
            "9999-W52",
            "0001-W01",
            "2026-W99",
            "0001-01-01",
            "9999-12-31",
            "9999-12-31T23:59",
            "0001-01-01T00:00",
            "2026-02-30",
            "on",
        ]
    ),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.uuids().map(str),
)


def _day(day: datetime.date) -> str:
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}"


ANY_DAY = st.dates(min_value=datetime.date(1, 1, 1), max_value=datetime.date(9999, 12, 31))
NEAR_DAY = st.dates(
    min_value=datetime.date.today() - datetime.timedelta(days=3650),
    max_value=datetime.date.today() + datetime.timedelta(days=3650),
)
DAYS = st.one_of(ANY_DAY, NEAR_DAY).map(_day)
MOMENTS = st.builds(
    lambda day, hour, minute: f"{day}T{hour:02d}:{minute:02d}",
    DAYS,
    st.integers(0, 23),
    st.integers(0, 59),
)


def _choice_values(field) -> list[str]:
    values = []
    for value, label in field.choices:
        if isinstance(label, list | tuple):  # optgroups
            values.extend(str(v) for v, _ in label)
        else:
            values.append(str(getattr(value, "value", value)))
    return values or [""]


def _field_values(field) -> st.SearchStrategy:
    """Values the field accepts, or nearly does."""
    if isinstance(field, forms.ModelMultipleChoiceField | forms.MultipleChoiceField):
        return st.lists(st.sampled_from(_choice_values(field)), max_size=3)
    if isinstance(field, forms.ChoiceField):  # includes ModelChoiceField, TypedChoiceField
        return st.sampled_from(_choice_values(field))
    if isinstance(field, forms.DateTimeField):
        return MOMENTS
    if isinstance(field, forms.DateField):
        return DAYS
    if isinstance(field, forms.IntegerField):
        return st.integers(-10, 100_000).map(str)
    if isinstance(field, forms.DecimalField):
        return st.decimals(Decimal("-1"), Decimal("100000"), places=2).map(str)
    if isinstance(field, forms.BooleanField):
        return st.sampled_from(["on", "", "false", "true"])
    if isinstance(field, forms.UUIDField):
        return st.uuids().map(str)
    if isinstance(field, forms.EmailField):
        return st.emails()
    return st.text(max_size=30)


def _values(field) -> st.SearchStrategy:
    if field is None:
        return st.one_of(NASTY_TEXT, DAYS)
    return st.one_of(_field_values(field), NASTY_TEXT)


@contextlib.contextmanager
def _reads():
    """Record every key any QueryDict is asked for while a request is answered."""
    keys = set()
    originals = {name: getattr(QueryDict, name) for name in ("__getitem__", "get", "getlist")}

    def recording(name):
        def method(self, key, *args, **kwargs):
            keys.add(key)
            return originals[name](self, key, *args, **kwargs)

        return method

    for name in originals:
        setattr(QueryDict, name, recording(name))
    try:
        yield keys
    finally:
        for name, method in originals.items():
            setattr(QueryDict, name, method)


PROBE = "_probe"


def _discover(client: Client, url: str) -> tuple[dict, dict]:
    """(query parameters, form fields) of the page: name -> form field, or None when the view
    reads the parameter directly.

    The GET carries one made-up parameter, so that a filter form bound to a non-empty query
    string (`Form(request.GET or None)`) reads its fields too; those reads are the query
    parameters. The POST is empty: the fields of the forms it renders, and anything it reads,
    are the form fields.
    """
    query, fields = {}, {}
    for method, data in (("get", {PROBE: "1"}), ("post", {})):
        with transaction.atomic(), _reads() as keys:
            response = getattr(client, method)(url, data)
            transaction.set_rollback(True)
        found = query if method == "get" else fields
        for key in keys - {PROBE}:
            found.setdefault(key, None)
        for form in catalogue.rendered_forms(response):
            for name, field in form.fields.items():
                if form.add_prefix(name) in found or method == "post":
                    found[form.add_prefix(name)] = field
    return query, fields


def _payload(keys: dict) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={k: _values(field) for k, field in keys.items()})


@pytest.mark.parametrize("pattern", TARGETS, ids=str)
def test_fuzz(pattern, world, server_errors):
    client = Client()  # a view's exception reaches Hypothesis, which shrinks the example
    client.force_login(world.admin)
    url = catalogue.path_for(pattern, catalogue.real_values(pattern, world))
    query, fields = _discover(client, url)
    if not query and not fields:
        return  # the page reads no input: the URL x role walk covers it
    client.get(url)  # as a user would before posting (a page may set itself up on first view)
    baseline = catalogue.snapshot()
    strategies = [st.tuples(st.just("get"), _payload(query))]
    if fields:
        strategies.append(st.tuples(st.just("post"), _payload(fields)))

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(st.one_of(strategies))
    def attack(request):
        method, params = request
        COUNTS["fuzz cases"] += 1
        with transaction.atomic():
            response = getattr(client, method)(url, params)
            assert response.status_code < 500, response.status_code
            if method == "post" and catalogue.refused(response):
                assert catalogue.changed_tables(baseline, catalogue.snapshot()) == []
            transaction.set_rollback(True)

    # The inputs the outside attack test used, every time, on top of the random ones.
    for key in query:
        for value in KNOWN_ATTACKS:
            attack = example(("get", {key: value}))(attack)
    for value in KNOWN_ATTACKS[:2]:
        attack = example(("post", dict.fromkeys(fields, value)))(attack)
    attack()
    assert not server_errors, "\n".join(server_errors)


def test_the_fuzz_reaches_query_parameters_and_form_fields(world):
    client = Client()
    client.force_login(world.admin)
    search = catalogue.path_for(catalogue.by_name("patient_list"), {})
    query, _ = _discover(client, search)
    assert {"q", "status", "page"} <= set(query)
    worklist, _ = _discover(client, catalogue.path_for(catalogue.by_name("flag_worklist"), {}))
    assert {"kind", "program", "coach", "page"} <= set(worklist)  # a filter form's fields
    edit = catalogue.by_name("patient_edit")
    _, fields = _discover(client, catalogue.path_for(edit, catalogue.real_values(edit, world)))
    assert {"record_number", "date_of_birth", "email"} <= set(fields)
    assert isinstance(fields["date_of_birth"], forms.DateField)
