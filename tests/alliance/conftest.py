import datetime

import numpy as np
import pytest
from django.utils import timezone

from alliance.models import FlagRule
from clinic import services as clinic_services
from clinic.models import CoachAssignment
from clinic.roles import Role
from outcomes import services as outcome_services
from sessions.models import Session, SessionKind
from tests.factories import (
    CoachAssignmentFactory,
    EnrolmentFactory,
    PatientFactory,
    ProgramFactory,
    UserFactory,
    protocol_named,
)
from tests.helpers import book_session
from tests.workers import queue, start_worker  # noqa: F401


def wai_answers(bond: int, rest: int = 4) -> dict[int, int]:
    """Every bond item (3, 5, 7, 9) answered `bond`, the others `rest`."""
    return {n: (bond if n in (3, 5, 7, 9) else rest) for n in range(1, 13)}


@pytest.fixture
def rate(people):
    def _rate(bond, *, days_ago=1, rest=4, code="wai-sr", answers=None):
        return outcome_services.response_record(
            actor=people.coach,
            patient=people.patient,
            version=outcome_services.latest_version(code),
            answers=answers or wai_answers(bond, rest),
            administered_at=timezone.now() - datetime.timedelta(days=days_ago),
        )

    return _rate


# --- expected trajectories (test_trajectories, the browser tests) ---------------------------


def bond_answers(bond: float) -> dict[int, int]:
    """WAI-SR answers whose bond mean is `bond` (a multiple of 0.25), the rest 4."""
    total = int(round(min(max(bond, 1.0), 5.0) * 4))
    low, extra = divmod(total, 4)
    bond_items = [low + (1 if i < extra else 0) for i in range(4)]
    answers = {n: 4 for n in range(1, 13)}
    answers.update(dict(zip((3, 5, 7, 9), bond_items, strict=True)))
    return answers


@pytest.fixture
def program_with_history(people):
    """Six earlier patients rated at preparations 1 and 2 of the psilocybin protocol, and the
    persona patient enrolled too; the program needs 5 earlier patients for a band."""
    return build_program_with_history(people)


def build_program_with_history(people):
    """What `program_with_history` builds, for a module that builds it once."""
    program = ProgramFactory(protocol=protocol_named("Psilocybin for depression, two doses"))
    FlagRule.objects.create(program=program, band_min_patients=5)
    start = timezone.localdate() - datetime.timedelta(days=10)
    earlier = [3.5, 3.75, 4.0, 4.25, 4.5, 4.75]
    for bond in earlier:
        enrolment = clinic_services.patient_enrol(
            actor=people.admin, patient=PatientFactory(), program=program, start_date=start
        )
        for session in preparations(enrolment)[:2]:
            rate_at(people, enrolment.patient, session, bond)
    people.enrolment.status = "completed"
    people.enrolment.save(update_fields=["status"])
    enrolment = clinic_services.patient_enrol(
        actor=people.admin, patient=people.patient, program=program, start_date=start
    )
    return enrolment, earlier


def preparations(enrolment):
    return list(
        Session.objects.filter(enrolment=enrolment, kind=SessionKind.PREPARATION).order_by(
            "scheduled_start"
        )
    )


def rate_at(people, patient, session, bond):
    return outcome_services.response_record(
        actor=people.admin,
        patient=patient,
        version=outcome_services.latest_version("wai-sr"),
        answers=bond_answers(bond),
        administered_at=min(session.scheduled_end, timezone.now()),
        session=session,
    )


# --- supervision: a clinic whose truth is known (test_supervision, the browser tests) ------

# coach -> (patients, true mean bond)
TRUTH = {"Ana": (8, 4.25), "Ben": (8, 4.0), "Cat": (8, 3.0), "Dee": (2, 4.0)}
RATINGS_PER_PATIENT = 3


@pytest.fixture
def clinic_of_coaches(people):
    """Each patient has a lead coach, a preparation session with that coach and three WAI-SR
    ratings naming the coach: the patient's level is the coach's true mean plus N(0, .3), each
    rating that level plus N(0, .25), rounded to the instrument's quarter points."""
    rng = np.random.default_rng(16)
    version = outcome_services.latest_version("wai-sr")
    coaches = {}
    now = timezone.now().replace(microsecond=0)
    for name, (patients, mean) in TRUTH.items():
        coach = UserFactory(role=Role.COACH, display_name=name)
        coaches[name] = coach
        for p in range(patients):
            enrolment = EnrolmentFactory(enrolled_by=people.admin)
            CoachAssignmentFactory(
                enrolment=enrolment,
                coach=coach,
                assigned_by=people.admin,
                role=CoachAssignment.Role.LEAD,
            )
            start = now - datetime.timedelta(days=30, hours=p)
            preparation = book_session(enrolment, actor=people.admin, start=start, minutes=50)
            level = mean + rng.normal(0, 0.3)
            for r in range(RATINGS_PER_PATIENT):
                last = r == RATINGS_PER_PATIENT - 1
                outcome_services.response_record(
                    actor=people.admin,
                    patient=enrolment.patient,
                    version=version,
                    answers=bond_answers(level + rng.normal(0, 0.25)),
                    administered_at=start - datetime.timedelta(days=10 - 3 * r)
                    if not last
                    else start + datetime.timedelta(minutes=55),
                    session=preparation if last else None,
                    about_coach=coach,
                )
    return coaches
