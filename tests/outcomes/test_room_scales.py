"""The dosing room's scales, scored by hand: MOAA/S (sedation, 5 = alert) and the 23-item
CADSS (dissociation, 0-92, above 4 counted as dissociation in esketamine trials)."""

import pytest

from outcomes import scoring


@pytest.mark.parametrize(
    ("answer", "band"),
    [(5, "Alert"), (4, "Mild sedation"), (3, "Moderate sedation"), (1, "Deep sedation")],
)
def test_moaa_s_is_the_one_level_chosen_with_its_band(answer, band):
    total = scoring.score(scoring.get_definition("moaa-s"), {1: answer}).total
    assert total.value == answer and total.band == band


def test_cadss_sums_the_23_items_and_reads_above_4_as_dissociation():
    definition = scoring.get_definition("cadss")
    assert len(definition["items"]) == 23
    none = scoring.score(definition, dict.fromkeys(range(1, 24), 0) | {1: 2, 12: 2}).total
    assert none.value == 4 and none.band == "No marked dissociation"
    some = scoring.score(definition, dict.fromkeys(range(1, 24), 1)).total
    assert some.value == 23 and some.band == "Dissociation"
    unanswered = scoring.score(definition, dict.fromkeys(range(1, 23), 1)).total
    assert unanswered.value is None  # every item is needed for a total


def test_both_say_whose_they_are_and_what_licence_allows():
    for code in ("moaa-s", "cadss"):
        definition = scoring.get_definition(code)
        assert definition["respondent"] == "clinician"
        assert definition["citation"] and definition["licence"] and definition["verification"]
    assert scoring.get_definition("cadss")["provisional"] is True
