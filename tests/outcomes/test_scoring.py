"""Hand-worked examples for the instrument definitions and the scoring engine.

Pure Python: no database, no Django. Every expected number has its arithmetic next to it.
"""

import copy
import json
from fractions import Fraction

import pytest

from outcomes import scoring
from outcomes.scoring import AnswerError, DefinitionError

EXPECTED_CODES = {
    "wai-sr",
    "srs",
    "phq-9",
    "gad-7",
    "qids-sr-16",
    "meq-30",
    "piq",
    "ebi",
    "grid-hamd-17",
    "moaa-s",
    "cadss",
}


def defn(code):
    return scoring.get_definition(code)


def seq(*values):
    """Answers for items 1..n in order."""
    return {i: v for i, v in enumerate(values, start=1)}


# --------------------------------------------------------------------------------------------
# Shipped definitions
# --------------------------------------------------------------------------------------------


def test_every_shipped_definition_validates():
    defs = scoring.load_all()
    assert {d["code"] for d in defs} == EXPECTED_CODES
    for d in defs:
        scoring.validate_definition(d)  # raises on any problem
        path = scoring.definitions_dir() / f"{d['code']}-{d['version']}.json"
        assert path.is_file()
        assert d["verification"].strip()
        assert isinstance(d["higher_is_better"], bool)


def test_item_labels_are_short_and_item_counts_match_the_instruments():
    counts = {
        "wai-sr": 12,
        "srs": 4,
        "phq-9": 10,  # 9 scored + the functional-difficulty item
        "gad-7": 7,
        "qids-sr-16": 16,
        "meq-30": 30,
        "piq": 23,
        "ebi": 6,
        "grid-hamd-17": 17,
    }
    for code, n in counts.items():
        d = defn(code)
        assert len(d["items"]) == n, code
        assert all(len(item["label"]) <= 60 for item in d["items"])


def test_piq_is_marked_provisional():
    d = defn("piq")
    assert d["provisional"] is True
    assert [len(s["items"]) for s in d["subscales"]] == [14, 9]


def test_load_definition_rejects_a_file_named_after_another_version(tmp_path):
    d = defn("gad-7")
    wrong = tmp_path / "gad-7-2.json"
    wrong.write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(DefinitionError, match="file name should be gad-7-1.json"):
        scoring.load_definition(wrong)


# --------------------------------------------------------------------------------------------
# validate_definition: malformed definitions are refused with a clear message
# --------------------------------------------------------------------------------------------


def broken(code, change):
    d = copy.deepcopy(defn(code))
    change(d)
    return d


@pytest.mark.parametrize(
    ("code", "change", "message"),
    [
        (
            "wai-sr",
            lambda d: d["subscales"][0]["items"].append(99),
            "unknown item 99",
        ),
        (
            "phq-9",
            lambda d: d["bands"][1].update({"min": 4}),  # 0-4 and 4-9 overlap
            "overlaps",
        ),
        (
            "phq-9",
            lambda d: d["bands"].pop(),  # nothing covers 20-27
            "must cover the score range 0-27",
        ),
        (
            "phq-9",
            lambda d: d["safety_items"][0].update({"number": 42}),
            "safety item names unknown item",
        ),
        (
            "phq-9",
            lambda d: d["subscales"].append({"code": "x", "name": "X", "items": [10]}),
            "unscored item 10",
        ),
        (
            "phq-9",
            lambda d: d["missing"].update({"max_missing": 2, "rule": "none"}),
            "requires max_missing 0",
        ),
        (
            "gad-7",
            lambda d: d["missing"].update({"max_missing": 7, "rule": "prorate"}),
            "must be below the number of items",
        ),
        (
            "qids-sr-16",
            lambda d: d["scoring"]["domains"].pop(),  # items 15-16 left in no domain
            "cover every scored item exactly once",
        ),
        (
            "gad-7",
            lambda d: d["items"][3].update({"number": 3}),
            "duplicate item numbers",
        ),
        (
            "meq-30",
            lambda d: d["special"].update({"treatment_outcome": {"response_min_drop": 0.5}}),
            "response_min_drop|remission_max|lower scores",
        ),
        (
            "srs",
            lambda d: d["scale"].update({"step": 0.3}),  # 10 is not reachable in 0.3 steps
            "not reachable",
        ),
        (
            "wai-sr",
            lambda d: d.update({"rci_scale": "alliance"}),
            "rci_scale 'alliance'",
        ),
        (
            "ebi",
            lambda d: d.pop("higher_is_better"),
            "missing 'higher_is_better'",
        ),
        (
            "gad-7",
            lambda d: d.pop("primary"),
            "missing 'primary'",
        ),
        (
            "phq-9",  # the band follows the sum: an item mean must not be its headline
            lambda d: d["primary"].update({"statistic": "mean"}),
            "primary.statistic 'mean' needs scoring.method 'mean' \\(the band is read on the sum",
        ),
        (
            "wai-sr",
            lambda d: d["primary"].update({"statistic": "sum"}),
            "primary.statistic 'sum' needs scoring.method 'sum' \\(the band is read on the mean",
        ),
        (
            "ebi",
            lambda d: d["primary"].update({"statistic": "percent_of_max"}),
            "needs special.percent_of_max",
        ),
        (
            "wai-sr",
            lambda d: d["primary"].update({"scale": "alliance"}),
            "primary.scale must be 'total' or a subscale code",
        ),
        (
            "srs",
            lambda d: d["primary"].update({"label": " "}),
            "primary.label must be a non-empty string",
        ),
    ],
)
def test_malformed_definitions_are_rejected(code, change, message):
    with pytest.raises(DefinitionError, match=message):
        scoring.validate_definition(broken(code, change))


# --------------------------------------------------------------------------------------------
# validate_answers
# --------------------------------------------------------------------------------------------


def test_validate_answers_reports_unknown_out_of_range_and_off_step_items():
    errors = scoring.validate_answers(
        defn("wai-sr"),
        {1: 0, 2: 2.5, 3: "4", 4: True, 5: None, 13: 3, 6: 5},
    )
    assert set(errors) == {1, 2, 3, 4, 13}  # 5 (unanswered) and 6 (valid) are fine
    assert "outside 1-5" in errors[1]
    assert "not a multiple of 1" in errors[2]
    assert "not a number" in errors[3]
    assert "not a number" in errors[4]  # booleans are not answers
    assert errors[13] == "unknown item"


def test_vas_answers_must_sit_on_the_tenth_grid():
    errors = scoring.validate_answers(defn("srs"), {1: 9.15, 2: 10.5, 3: 0.1, 4: 10})
    assert set(errors) == {1, 2}


def test_score_refuses_invalid_answers_with_the_offending_items():
    with pytest.raises(AnswerError) as info:
        scoring.score(defn("gad-7"), seq(0, 1, 2, 3, 4, 0, 0))  # item 5 = 4 > 3
    assert set(info.value.errors) == {5}


def test_digit_string_item_numbers_are_accepted():
    result = scoring.score(defn("gad-7"), {str(i): 1 for i in range(1, 8)})
    assert result.total.value == 7  # 7 x 1


# --------------------------------------------------------------------------------------------
# WAI-SR
# --------------------------------------------------------------------------------------------

# goal 4, 6, 8, 11 = 4, 4, 5, 3 -> sum 16, mean 16/4 = 4.0
# task 1, 2, 10, 12 = 3, 3, 4, 2 -> sum 12, mean 12/4 = 3.0
# bond 3, 5, 7, 9   = 5, 4, 4, 4 -> sum 17, mean 17/4 = 4.25
WAI = {1: 3, 2: 3, 3: 5, 4: 4, 5: 4, 6: 4, 7: 4, 8: 5, 9: 4, 10: 4, 11: 3, 12: 2}


def test_wai_sr_subscale_sums_and_means():
    result = scoring.score(defn("wai-sr"), WAI)
    goal, task, bond = result.scale("goal"), result.scale("task"), result.scale("bond")
    assert (goal.value, goal.mean) == (16, 4.0)
    assert (task.value, task.mean) == (12, 3.0)
    assert (bond.value, bond.mean) == (17, 4.25)
    # total: 16 + 12 + 17 = 45; mean 45 / 12 = 3.75; the headline is the mean (method "mean")
    assert (result.total.value, result.total.mean, result.total.headline) == (45, 3.75, 3.75)
    assert result.total.band == ""  # no published bands
    assert result.complete is True
    assert result.safety_hits == []


def test_wai_sr_prorates_a_subscale_with_one_missing_item():
    answers = WAI | {9: None}
    result = scoring.score(defn("wai-sr"), answers)
    bond = result.scale("bond")
    # bond 5, 4, 4 -> mean 13/3 = 4.333.. -> 4.33; prorated sum 13/3 x 4 = 17.333.. -> 17.3
    assert (bond.mean, bond.value, bond.prorated, bond.complete) == (4.33, 17.3, True, False)
    assert (bond.answered, bond.expected) == (3, 4)
    # total = 16 + 12 + 52/3 = 136/3 = 45.333.. -> 45.3; mean 136/3 / 12 = 3.777.. -> 3.78
    total = result.total
    assert (total.value, total.mean, total.prorated) == (45.3, 3.78, True)
    assert (total.answered, total.expected) == (11, 12)
    assert result.complete is False


def test_wai_sr_subscale_with_two_missing_items_leaves_no_total():
    answers = WAI | {7: None, 9: None}
    result = scoring.score(defn("wai-sr"), answers)
    assert result.scale("bond").value is None
    assert result.scale("bond").mean is None
    assert result.total.value is None
    assert result.total.headline is None
    # the other subscales are still scored: goal mean 4.0, task mean 3.0
    assert result.scale("goal").mean == 4.0
    assert result.scale("task").mean == 3.0


def test_wai_sr_one_missing_item_in_two_subscales_still_gives_a_total():
    answers = WAI | {11: None, 12: None}
    result = scoring.score(defn("wai-sr"), answers)
    # goal 4, 4, 5 -> mean 13/3 -> 4.33, sum 52/3 -> 17.3
    # task 3, 3, 4 -> mean 10/3 -> 3.33, sum 40/3 -> 13.3
    assert (result.scale("goal").mean, result.scale("goal").value) == (4.33, 17.3)
    assert (result.scale("task").mean, result.scale("task").value) == (3.33, 13.3)
    # total = 52/3 + 40/3 + 17 = 143/3 = 47.666.. -> 47.7; mean 143/36 = 3.972.. -> 3.97
    assert (result.total.value, result.total.mean) == (47.7, 3.97)


# --------------------------------------------------------------------------------------------
# SRS
# --------------------------------------------------------------------------------------------


def test_srs_total_and_cutoff():
    result = scoring.score(defn("srs"), seq(9.1, 8.7, 9.5, 8.9))
    # 9.1 + 8.7 + 9.5 + 8.9 = 36.2 (exact decimal arithmetic, no 36.19999)
    assert result.total.value == 36.2
    assert result.total.mean == 9.05  # 36.2 / 4
    assert result.extras["below_cutoff"] is False


def test_srs_below_36_alerts_and_36_itself_does_not():
    low = scoring.score(defn("srs"), seq(8.9, 9.0, 9.0, 9.0))  # 35.9 < 36
    assert low.total.value == 35.9
    assert low.extras["below_cutoff"] is True
    at = scoring.score(defn("srs"), seq(9, 9, 9, 9))  # 36 is not below 36
    assert at.total.value == 36
    assert at.extras["below_cutoff"] is False


def test_srs_needs_all_four_lines():
    result = scoring.score(defn("srs"), seq(9.1, 8.7, None, 8.9))
    assert result.total.value is None
    assert (result.total.answered, result.total.expected) == (3, 4)
    assert result.extras["below_cutoff"] is None


# --------------------------------------------------------------------------------------------
# PHQ-9
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answers", "total", "band"),
    [
        ((1, 1, 1, 1, 0, 0, 0, 0, 0), 4, "Minimal"),  # 1+1+1+1 = 4
        ((1, 1, 1, 1, 1, 0, 0, 0, 0), 5, "Mild"),  # 5 x 1 = 5
        ((1, 1, 1, 1, 1, 1, 1, 1, 1), 9, "Mild"),  # 9 x 1 = 9
        ((2, 1, 1, 1, 1, 1, 1, 1, 1), 10, "Moderate"),  # 2 + 8 = 10
        ((2, 2, 2, 2, 2, 1, 1, 1, 1), 14, "Moderate"),  # 10 + 4 = 14
        ((2, 2, 2, 2, 2, 2, 1, 1, 1), 15, "Moderately severe"),  # 12 + 3 = 15
        ((3, 3, 3, 2, 2, 2, 2, 2, 0), 19, "Moderately severe"),  # 9 + 10 + 0 = 19
        ((3, 3, 3, 3, 2, 2, 2, 2, 0), 20, "Severe"),  # 12 + 8 = 20
        ((3, 3, 3, 3, 3, 3, 3, 3, 3), 27, "Severe"),  # 9 x 3 = 27
        ((0, 0, 0, 0, 0, 0, 0, 0, 0), 0, "Minimal"),
    ],
)
def test_phq9_band_boundaries(answers, total, band):
    result = scoring.score(defn("phq-9"), seq(*answers))
    assert result.total.value == total
    assert result.total.band == band
    assert result.total.prorated is False


def test_phq9_prorates_two_missing_items():
    answers = seq(2, 2, 2, 1, 1, 1, 1, None, None)
    result = scoring.score(defn("phq-9"), answers)
    # 7 answered, sum 10, mean 10/7 = 1.4285.. -> 1.43; prorated 10/7 x 9 = 90/7 = 12.857.. -> 13
    assert (result.total.mean, result.total.value) == (1.43, 13)
    assert result.total.prorated is True
    assert result.total.band == "Moderate"  # 10 <= 13 < 15
    assert (result.total.answered, result.total.expected) == (7, 9)


def test_phq9_prorated_half_points_round_up_to_a_whole_total_before_banding():
    result = scoring.score(defn("phq-9"), seq(1, 1, 1, 1, 0, 0, 0, 0, None))
    # 8 answered, sum 4, mean 0.5; prorated 0.5 x 9 = 4.5 -> 5 (half up) -> "Mild"
    assert result.total.value == 5
    assert result.total.band == "Mild"


@pytest.mark.parametrize(
    "answers, total, band",
    [
        # 7 answered, sum 11: 11/7 = 1.571.. x 9 = 99/7 = 14.14.. -> 14
        ((2, 2, 2, 2, 1, 1, 1, None, None), 14, "Moderate"),
        # 8 answered, sum 13: 13/8 = 1.625 x 9 = 14.625 -> 15 (was 14.6, "Moderate")
        ((2, 2, 2, 2, 2, 1, 1, 1, None), 15, "Moderately severe"),
        # 8 answered, sum 12: 1.5 x 9 = 13.5 -> 14 (half up)
        ((2, 2, 2, 2, 1, 1, 1, 1, None), 14, "Moderate"),
        # 7 answered, sum 15: 15/7 x 9 = 135/7 = 19.28.. -> 19
        ((3, 3, 3, 2, 2, 1, 1, None, None), 19, "Moderately severe"),
        # 8 answered, sum 17: 17/8 x 9 = 19.125 -> 19
        ((3, 3, 3, 2, 2, 2, 1, 1, None), 19, "Moderately severe"),
        # 8 answered, sum 18: 2.25 x 9 = 20.25 -> 20
        ((3, 3, 3, 3, 2, 2, 1, 1, None), 20, "Severe"),
    ],
)
def test_phq9_prorated_total_is_a_whole_number_banded_as_shown(answers, total, band):
    result = scoring.score(defn("phq-9"), seq(*answers))
    assert result.total.prorated is True
    assert result.total.value == total
    assert float(result.total.value).is_integer()
    assert result.total.band == band


def test_rounding_is_half_up():
    result = scoring.score(defn("phq-9"), seq(1, 0, 0, 0, 0, 0, 0, 0, None))
    # 8 answered, sum 1: mean 1/8 = 0.125 -> 0.13 (half-up; half-even would give 0.12)
    # prorated 0.125 x 9 = 1.125 -> 1 (a whole number, like an unprorated PHQ-9 total)
    assert (result.total.mean, result.total.value) == (0.13, 1)


@pytest.mark.parametrize("places", [0, 1, 2])
def test_a_whole_number_rounds_as_the_decimal_rounding_would_round_it(places):
    # Whole sums skip the decimal rounding; both ways must give the same float.
    for whole in (*range(-3, 140), 10**14, -(10**14)):
        quick = scoring._round(Fraction(whole), places)
        assert quick == scoring._round_fraction(Fraction(whole), places)
        assert type(quick) is float
    assert scoring._round(Fraction(9, 8), places) == scoring._round_fraction(Fraction(9, 8), places)


def test_phq9_three_missing_items_give_no_score():
    result = scoring.score(defn("phq-9"), seq(2, 2, 2, 1, 1, 1, None, None, None))
    assert result.total.value is None
    assert result.total.band == ""
    assert result.total.answered == 6


def test_phq9_item9_is_a_safety_hit():
    result = scoring.score(defn("phq-9"), seq(0, 0, 0, 0, 0, 0, 0, 0, 1))
    assert result.total.value == 1
    assert len(result.safety_hits) == 1
    hit = result.safety_hits[0]
    assert (hit.item, hit.value, hit.urgent) == (9, 1.0, False)
    assert "self-harm" in hit.message
    urgent = scoring.score(defn("phq-9"), seq(0, 0, 0, 0, 0, 0, 0, 0, 2))
    assert urgent.safety_hits[0].urgent is True


def test_phq9_safety_is_reported_even_without_a_total():
    result = scoring.score(defn("phq-9"), {9: 3})  # 8 items missing
    assert result.total.value is None
    assert [(h.item, h.urgent) for h in result.safety_hits] == [(9, True)]


def test_phq9_item10_is_recorded_but_not_scored():
    result = scoring.score(defn("phq-9"), seq(1, 1, 1, 1, 1, 0, 0, 0, 0) | {10: 3})
    assert result.total.value == 5  # item 10 (= 3) is not added
    assert result.total.expected == 9
    with pytest.raises(AnswerError):
        scoring.score(defn("phq-9"), {10: 4})  # item 10 is still range-checked (0-3)


# --------------------------------------------------------------------------------------------
# GAD-7
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answers", "total", "band"),
    [
        ((1, 1, 1, 1, 0, 0, 0), 4, "Minimal"),  # 4 x 1
        ((1, 1, 1, 1, 1, 0, 0), 5, "Mild"),  # 5 x 1
        ((2, 2, 1, 1, 1, 1, 1), 9, "Mild"),  # 4 + 5
        ((2, 2, 2, 1, 1, 1, 1), 10, "Moderate"),  # 6 + 4
        ((2, 2, 2, 2, 2, 2, 2), 14, "Moderate"),  # 7 x 2
        ((3, 2, 2, 2, 2, 2, 2), 15, "Severe"),  # 3 + 12
        ((3, 3, 3, 3, 3, 3, 3), 21, "Severe"),  # 7 x 3
    ],
)
def test_gad7_band_boundaries(answers, total, band):
    result = scoring.score(defn("gad-7"), seq(*answers))
    assert (result.total.value, result.total.band) == (total, band)


def test_gad7_needs_all_seven_items():
    result = scoring.score(defn("gad-7"), seq(3, 3, 3, 3, 3, 3, None))
    assert result.total.value is None


# --------------------------------------------------------------------------------------------
# QIDS-SR-16
# --------------------------------------------------------------------------------------------

QIDS = {
    1: 1, 2: 3, 3: 0, 4: 2,  # sleep = max(1, 3, 0, 2) = 3
    5: 2,  # sad mood = 2
    6: 2, 7: None, 8: 1, 9: None,  # appetite/weight = max(2, 1) = 2; 7 and 9 unanswered
    10: 1, 11: 0, 12: 1, 13: 2, 14: 3,  # 1, 0, 1, 2, 3
    15: 0, 16: 1,  # psychomotor = max(0, 1) = 1
}  # fmt: skip


def test_qids_max_of_domain_with_unanswered_alternatives():
    result = scoring.score(defn("qids-sr-16"), QIDS)
    # 3 + 2 + 2 + 1 + 0 + 1 + 2 + 3 + 1 = 15
    assert result.total.value == 15
    assert result.total.band == "Moderate"  # 11-15
    assert (result.total.answered, result.total.expected) == (9, 9)  # domains
    assert result.total.complete is True  # unanswered alternatives are not missing
    assert result.extras["domains"]["sleep"] == 3
    assert result.extras["domains"]["appetite_weight"] == 2
    assert result.extras["domains"]["psychomotor"] == 1


def test_qids_band_boundary_none_to_mild():
    five = dict.fromkeys(range(1, 17), 0) | {5: 2, 13: 3}  # 2 + 3 = 5
    six = five | {14: 1}  # 5 + 1 = 6
    assert scoring.score(defn("qids-sr-16"), five).total.band == "None"
    assert scoring.score(defn("qids-sr-16"), six).total.band == "Mild"


def test_qids_unanswered_domain_gives_no_total():
    answers = QIDS | {6: None, 8: None}  # no appetite/weight item answered at all
    result = scoring.score(defn("qids-sr-16"), answers)
    assert result.total.value is None
    assert (result.total.answered, result.total.expected) == (8, 9)
    assert result.extras["domains"]["appetite_weight"] is None


def test_qids_item12_safety_and_urgency():
    result = scoring.score(defn("qids-sr-16"), QIDS)  # item 12 = 1
    assert [(h.item, h.urgent) for h in result.safety_hits] == [(12, False)]
    urgent = scoring.score(defn("qids-sr-16"), QIDS | {12: 2})
    assert [(h.item, h.urgent) for h in urgent.safety_hits] == [(12, True)]


def test_qids_response_and_remission():
    out = scoring.treatment_outcome(defn("qids-sr-16"), 16, 5)
    # drop 11 of 16 = 68.75% >= 50%; 5 <= 5 -> remission; change -68.75% -> -68.8 (half-up)
    assert (out["response"], out["remission"], out["percent_change"]) == (True, True, -68.8)
    out = scoring.treatment_outcome(defn("qids-sr-16"), 16, 6)
    assert (out["response"], out["remission"]) == (True, False)  # 10/16 = 62.5% drop; 6 > 5


# --------------------------------------------------------------------------------------------
# MEQ-30
# --------------------------------------------------------------------------------------------


def test_meq_complete_mystical_experience_at_exactly_3():
    answers = dict.fromkeys(range(1, 31), 3)
    answers.update({4: 2, 5: 4})  # mystical still 45/15 = 3.0
    result = scoring.score(defn("meq-30"), answers)
    for code in ("mystical", "positive_mood", "transcendence", "ineffability"):
        assert result.scale(code).mean == 3.0
    assert result.total.mean == 3.0  # 90 / 30
    assert result.total.value == 90
    assert result.extras["percent_of_max"]["total"] == 60.0  # 3 / 5 x 100
    assert result.extras["complete_mystical_experience"] is True


def test_meq_just_below_3_on_one_subscale_is_not_complete():
    answers = dict.fromkeys(range(1, 31), 3)
    answers[29] = 2  # ineffability 3, 10, 29 = 3, 3, 2 -> 8/3 = 2.666.. -> 2.67
    result = scoring.score(defn("meq-30"), answers)
    assert result.scale("ineffability").mean == 2.67
    assert result.extras["percent_of_max"]["ineffability"] == 53.3  # 8/3 / 5 x 100 = 53.33..
    assert result.extras["complete_mystical_experience"] is False
    # total mean 89 / 30 = 2.966.. -> 2.97
    assert result.total.mean == 2.97


def test_meq_completeness_uses_the_exact_mean_not_the_rounded_one():
    answers = dict.fromkeys(range(1, 31), 5)
    mystical = [4, 5, 6, 9, 14, 15, 16, 18, 20, 21, 23, 24, 25, 26, 28]
    for n in mystical:
        answers[n] = 3
    answers[4] = 2  # mystical 44 / 15 = 2.9333.. -> shown 2.93, below 3.0
    result = scoring.score(defn("meq-30"), answers)
    assert result.scale("mystical").mean == 2.93
    assert result.extras["complete_mystical_experience"] is False


def test_meq_needs_all_items():
    answers = dict.fromkeys(range(1, 31), 5)
    answers[30] = None
    result = scoring.score(defn("meq-30"), answers)
    assert result.extras["complete_mystical_experience"] is None
    assert result.total.mean is None
    assert result.scale("positive_mood").mean is None  # item 30 is positive mood
    assert result.scale("mystical").mean == 5.0
    assert result.extras["percent_of_max"]["mystical"] == 100.0


# --------------------------------------------------------------------------------------------
# PIQ (provisional numbering) and EBI
# --------------------------------------------------------------------------------------------


def test_piq_subscale_means():
    answers = {n: (3 if n <= 14 else 1) for n in range(1, 24)}
    result = scoring.score(defn("piq"), answers)
    assert result.scale("avoidance_maladaptive").mean == 3.0  # 14 x 3 / 14
    assert result.scale("goals_adaptive").mean == 1.0  # 9 x 1 / 9
    # total 42 + 9 = 51; mean 51 / 23 = 2.2173.. -> 2.22
    assert (result.total.value, result.total.mean) == (51, 2.22)


def test_ebi_score_is_the_mean_of_six():
    result = scoring.score(defn("ebi"), seq(80, 65, 70, 90, 55, 60))
    # 80 + 65 + 70 + 90 + 55 + 60 = 420; 420 / 6 = 70.0
    assert (result.total.value, result.total.mean, result.total.headline) == (420, 70.0, 70.0)
    assert "mean" in result.extras["score_label"]
    other = scoring.score(defn("ebi"), seq(33, 50, 41, 0, 100, 77))
    # 33 + 50 + 41 + 0 + 100 + 77 = 301; 301 / 6 = 50.1666.. -> 50.17
    assert other.total.headline == 50.17


def test_ebi_rejects_off_scale_answers():
    assert set(scoring.validate_answers(defn("ebi"), seq(101, 50.5, -1, 0, 100, 7))) == {1, 2, 3}


# --------------------------------------------------------------------------------------------
# GRID-HAMD-17
# --------------------------------------------------------------------------------------------


def hamd(**values):
    answers = dict.fromkeys(range(1, 18), 0)
    answers.update({int(k[1:]): v for k, v in values.items()})
    return answers


def test_hamd_item_ranges():
    errors = scoring.validate_answers(defn("grid-hamd-17"), hamd(i4=3, i1=4, i3=4, i17=2))
    assert set(errors) == {4}  # item 4 is scored 0-2; items 1 and 3 go to 4
    assert "outside 0-2" in errors[4]
    for n in (4, 5, 6, 12, 13, 14, 16, 17):
        assert n in scoring.validate_answers(defn("grid-hamd-17"), {n: 3})
    for n in (1, 2, 3, 7, 8, 9, 10, 11, 15):
        assert scoring.validate_answers(defn("grid-hamd-17"), {n: 4}) == {}


@pytest.mark.parametrize(
    ("answers", "total", "band"),
    [
        (hamd(i1=4, i2=3), 7, "No depression"),  # 4 + 3
        (hamd(i1=4, i2=3, i7=1), 8, "Mild"),  # 7 + 1
        (hamd(i1=4, i2=4, i7=4, i10=4), 16, "Mild"),  # 4 x 4
        (hamd(i1=4, i2=4, i7=4, i10=4, i4=1), 17, "Moderate"),  # 16 + 1
        (hamd(i1=4, i2=4, i7=4, i10=4, i11=3, i4=2, i5=2), 23, "Moderate"),  # 19 + 4
        (hamd(i1=4, i2=4, i7=4, i10=4, i11=4, i4=2, i5=2), 24, "Severe"),  # 20 + 4
    ],
)
def test_hamd_band_boundaries(answers, total, band):
    result = scoring.score(defn("grid-hamd-17"), answers)
    assert (result.total.value, result.total.band) == (total, band)


def test_hamd_maximum_is_52():
    answers = {n: 4 for n in (1, 2, 3, 7, 8, 9, 10, 11, 15)}  # 9 x 4 = 36
    answers.update({n: 2 for n in (4, 5, 6, 12, 13, 14, 16, 17)})  # 8 x 2 = 16
    result = scoring.score(defn("grid-hamd-17"), answers)
    assert (result.total.value, result.total.band) == (52, "Severe")  # 36 + 16
    assert [(h.item, h.urgent) for h in result.safety_hits] == [(3, True)]


def test_hamd_item3_safety():
    result = scoring.score(defn("grid-hamd-17"), hamd(i3=1))
    assert [(h.item, h.value, h.urgent) for h in result.safety_hits] == [(3, 1.0, False)]
    assert scoring.score(defn("grid-hamd-17"), hamd(i3=3)).safety_hits[0].urgent is True


def test_hamd_not_assessed_weight_item_leaves_no_total():
    answers = hamd(i1=2)
    answers[16] = None
    assert scoring.score(defn("grid-hamd-17"), answers).total.value is None


@pytest.mark.parametrize(
    ("baseline", "current", "response", "remission", "both", "change"),
    [
        (24, 12, True, False, False, -50.0),  # (12 - 24) / 24 = -50% exactly: response
        (24, 13, False, False, False, -45.8),  # -11/24 = -45.83%: no response
        (20, 7, True, True, True, -65.0),  # -13/20 = -65%; 7 <= 7 remission
        (12, 7, False, True, False, -41.7),  # -5/12 = -41.67%: remission without response
        (18, 8, True, False, False, -55.6),  # -10/18 = -55.56%; 8 > 7
    ],
)
def test_hamd_response_and_remission(baseline, current, response, remission, both, change):
    out = scoring.hamd_outcome(baseline, current)
    assert out["response"] is response
    assert out["remission"] is remission
    assert out["remission_with_response"] is both
    assert out["percent_change"] == change


def test_hamd_outcome_rejects_scores_outside_0_to_52():
    with pytest.raises(ValueError):
        scoring.hamd_outcome(53, 10)


def test_treatment_outcome_needs_a_rule():
    with pytest.raises(DefinitionError):
        scoring.treatment_outcome(scoring.get_definition("phq-9", "1"), 20, 5)


def test_phq9_version_2_adds_only_the_response_and_remission_rule():
    first, second = scoring.get_definition("phq-9", "1"), scoring.get_definition("phq-9", "2")
    assert scoring.treatment_outcome(second, 20, 10)["response"] is True  # exactly half
    assert scoring.treatment_outcome(second, 20, 11)["response"] is False
    assert scoring.treatment_outcome(second, 20, 4)["remission"] is True
    assert scoring.treatment_outcome(second, 20, 5)["remission"] is False
    unchanged = ("items", "scale", "scoring", "missing", "bands", "rci", "safety_items", "primary")
    assert {key: first[key] for key in unchanged} == {key: second[key] for key in unchanged}


# --------------------------------------------------------------------------------------------
# Reliable change
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "before", "after", "expected"),
    [
        ("phq-9", 18, 12, "improved"),  # lower is better; drop 6 = RCI 6
        ("phq-9", 18, 13, "no reliable change"),  # drop 5 < 6
        ("phq-9", 10, 16, "deteriorated"),  # rise 6
        ("gad-7", 12, 8, "improved"),  # drop 4 = RCI 4
        ("gad-7", 8, 11, "no reliable change"),  # rise 3 < 4
        ("wai-sr", 3.5, 4.0, "improved"),  # bond mean; higher is better; +0.5 = RCI 0.5
        ("wai-sr", 4.0, 3.5, "deteriorated"),  # -0.5
        ("wai-sr", 4.0, 3.75, "no reliable change"),  # -0.25
    ],
)
def test_reliable_change_directions(code, before, after, expected):
    assert scoring.reliable_change(defn(code), before, after) == expected


def test_reliable_change_direction_follows_higher_is_better():
    srs = dict(defn("srs"), rci=2)  # clinic-chosen RCI for the test; higher is better
    assert scoring.reliable_change(srs, 30, 33) == "improved"
    assert scoring.reliable_change(srs, 33, 30) == "deteriorated"
    meq = dict(defn("meq-30"), rci=0.5)  # headline is the item mean (0-5)
    assert scoring.reliable_change(meq, 2.0, 3.0) == "improved"
    hamd_d = dict(defn("grid-hamd-17"), rci=5)  # lower is better
    assert scoring.reliable_change(hamd_d, 20, 14) == "improved"
    assert scoring.reliable_change(hamd_d, 14, 20) == "deteriorated"
    qids = dict(defn("qids-sr-16"), rci=4)
    assert scoring.reliable_change(qids, 10, 15) == "deteriorated"


def test_reliable_change_without_an_rci_is_refused():
    with pytest.raises(DefinitionError, match="no reliable change index"):
        scoring.reliable_change(defn("qids-sr-16"), 15, 5)


def test_reliable_change_rejects_scores_outside_the_scale():
    with pytest.raises(ValueError):
        scoring.reliable_change(defn("wai-sr"), 0.5, 4.0)  # bond mean is 1-5
    with pytest.raises(ValueError):
        scoring.reliable_change(defn("phq-9"), 30, 10)  # PHQ-9 total is 0-27


# --------------------------------------------------------------------------------------------
# Primary score: the number pages and exports show, as clinicians read it
# --------------------------------------------------------------------------------------------


def test_every_instrument_names_its_primary_score():
    primary = {
        d["code"]: (d["primary"]["scale"], d["primary"]["statistic"], d["primary"]["label"])
        for d in scoring.load_all()
    }
    assert primary == {
        "phq-9": ("total", "sum", "sum"),
        "gad-7": ("total", "sum", "sum"),
        "qids-sr-16": ("total", "sum", "sum"),
        "grid-hamd-17": ("total", "sum", "sum"),
        "srs": ("total", "sum", "sum"),
        "wai-sr": ("total", "mean", "mean"),
        "meq-30": ("total", "percent_of_max", "% of max"),
        "ebi": ("total", "mean", "mean"),
        "piq": ("total", "mean", "mean (provisional)"),
        "moaa-s": ("total", "sum", "score"),
        "cadss": ("total", "sum", "sum"),
    }


def _primary(code, answers, scale=None):
    result = scoring.score(defn(code), answers)
    scales = {s.code: s for s in result.scales}
    return scoring.primary_score(defn(code), scales, result.extras, scale=scale)


def test_a_phq9_of_16_is_shown_as_its_sum_not_its_item_mean():
    # 2+2+2+2+2+2+2+1+1 = 16; the item mean 16/9 = 1.78 is not what clinicians read
    primary = _primary("phq-9", seq(2, 2, 2, 2, 2, 2, 2, 1, 1))
    assert (primary.value, primary.shown, primary.label) == (16, "16", "sum")
    assert (primary.band, primary.prorated, primary.name) == ("Moderately severe", False, "Total")


def test_an_srs_is_shown_as_its_sum():
    # 8.1 + 8.2 + 8.1 + 8.2 = 32.6 (item mean 8.15)
    primary = _primary("srs", seq(8.1, 8.2, 8.1, 8.2))
    assert (primary.shown, primary.statistic, primary.label) == ("32.6", "sum", "sum")


def test_wai_sr_scales_are_shown_as_item_means():
    # bond 3, 3, 4, 4 -> mean 3.5; every other item 4 -> total (14 + 32) / 12 = 3.83
    answers = {n: 4 for n in range(1, 13)} | {3: 3, 5: 3}
    assert _primary("wai-sr", answers).shown == "3.83"
    bond = _primary("wai-sr", answers, scale="bond")
    assert (bond.name, bond.value, bond.label) == ("Bond", 3.5, "mean")


def test_a_prorated_wai_sr_bond_is_marked_prorated():
    answers = {n: 4 for n in range(1, 13)} | {3: 5, 9: None}  # bond 5, 4, 4 -> 4.33
    bond = _primary("wai-sr", answers, scale="bond")
    assert (bond.value, bond.prorated) == (4.33, True)


def test_meq30_is_shown_as_percent_of_maximum():
    # every item 4 of 5: 80% of maximum
    primary = _primary("meq-30", {n: 4 for n in range(1, 31)})
    assert (primary.value, primary.label) == (80.0, "% of max")
    assert _primary("meq-30", {n: 3 for n in range(1, 31)}, scale="mystical").shown == "60"


def test_a_prorated_phq9_is_shown_whole_and_marked_prorated():
    # 7 answered summing 11 (item 9 among the missing): 11/7 x 9 = 14.14 -> 14
    primary = _primary("phq-9", seq(2, 2, 2, 2, 1, 1, 1, None, None))
    assert (primary.shown, primary.band, primary.prorated) == ("14", "Moderate", True)


def test_an_unscorable_total_has_no_number_and_no_band():
    primary = _primary("phq-9", seq(2, 2, 2, 1, 1, 1, None, None, None))
    assert (primary.value, primary.shown, primary.band, primary.prorated) == (None, "", "", False)


def test_ebi_and_piq_are_shown_as_means():
    assert _primary("ebi", seq(50, 60, 70, 80, 90, 100)).shown == "75"
    piq = _primary("piq", {n: 3 for n in range(1, 24)})
    assert (piq.shown, piq.label) == ("3", "mean (provisional)")


def test_percent_of_max_falls_back_to_the_mean_when_extras_are_missing():
    result = scoring.score(defn("meq-30"), {n: 4 for n in range(1, 31)})
    scales = {s.code: s for s in result.scales}
    assert scoring.primary_score(defn("meq-30"), scales, {}).value == 80.0


# --------------------------------------------------------------------------------------------
# Safety items left unanswered
# --------------------------------------------------------------------------------------------


def test_phq9_without_item_9_lists_it_and_still_gives_a_prorated_total():
    result = scoring.score(defn("phq-9"), seq(2, 2, 2, 2, 2, 1, 1, 1, None))
    assert result.safety_unanswered == [9]
    assert result.safety_hits == []
    # 8 answered, sum 13: 13/8 x 9 = 14.625 -> 15
    assert (result.total.value, result.total.prorated) == (15, True)
    assert result.total.band == "Moderately severe"


def test_answered_safety_items_and_empty_responses_list_nothing():
    assert scoring.score(defn("phq-9"), seq(0, 0, 0, 0, 0, 0, 0, 0, 0)).safety_unanswered == []
    assert scoring.score(defn("phq-9"), {}).safety_unanswered == []
    assert scoring.score(defn("phq-9"), {n: None for n in range(1, 11)}).safety_unanswered == []
    assert scoring.score(defn("gad-7"), seq(1, None)).safety_unanswered == []  # none defined


def test_qids_and_hamd_list_their_own_safety_items():
    qids = {n: 1 for n in range(1, 17)} | {12: None}
    assert scoring.score(defn("qids-sr-16"), qids).safety_unanswered == [12]
    assert scoring.safety_unanswered(defn("grid-hamd-17"), {"1": 2, "3": None}) == [3]
