"""Reads about instruments that belong to the instrument, not to one version's file."""

import pytest

from outcomes import selectors
from outcomes.scoring import get_definition


@pytest.mark.django_db
def test_newest_definitions_names_each_instrument_once_at_its_highest_version():
    newest = selectors.newest_definitions(["phq-9", "wai-sr", "no-such-code"])
    assert set(newest) == {"phq-9", "wai-sr"}
    assert newest["phq-9"]["version"] == "2"
    assert newest["phq-9"]["special"]["treatment_outcome"]["remission_max"] == 4
    assert newest["wai-sr"] == get_definition("wai-sr")
