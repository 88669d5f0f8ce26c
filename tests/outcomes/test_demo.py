"""outcomes.demo: the demo's answers are a pure function of the seed and the record number."""

import hashlib
import random

from outcomes.demo import ANSWERS, _Story


def _course(seed_key: str, doses: int = 6) -> list:
    story = _Story(random.Random(seed_key))
    drawn = []
    for _ in range(doses):
        for code, draw in ANSWERS.items():
            drawn.append((code, sorted(draw(story).items())))
        story.after_dosing()
    return drawn


def test_a_patients_story_draws_the_answers_it_always_drew():
    # Pinned on the drawing as it was before it was made faster: a seeded clinic must keep
    # every value (and its type: 9 is not 9.0) for the same seed, whatever the code's shape.
    drawn = _course("11:DEMO-0001")

    assert drawn[0] == (
        "wai-sr",
        [(1, 4), (2, 4), (3, 4), (4, 4), (5, 4), (6, 4), (7, 4), (8, 4), (9, 3), (10, 4)]
        + [(11, 3), (12, 3)],
    )
    assert drawn[1] == ("srs", [(1, 9.2), (2, 9.5), (3, 9.0), (4, 9.3)])
    assert (
        hashlib.sha256(repr(drawn).encode()).hexdigest()
        == "89d6ef2bc62675ea977c52023de3b2cb5509ea59712bc8b41acc520ccf2126c4"
    )


def test_answers_stay_within_each_instruments_scale():
    for code, answers in _course("3:DEMO-A042"):
        low, high = (1, 5) if code == "wai-sr" else (0, 100)
        assert all(low <= value <= high for _, value in answers), code
        if code != "srs":
            assert all(type(value) is int for _, value in answers), code
