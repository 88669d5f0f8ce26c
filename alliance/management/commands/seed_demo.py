"""Seed a synthetic clinic: staff logins, programs, patients, enrolments and coach assignments.

Idempotent: users, programs and patients are matched by e-mail, name and record number, so a
second run adds nothing. All names are fake (Faker, fixed seed).
"""

import datetime
import enum
import random
import time
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone
from faker import Faker

from alliance.demo_bulk import BulkClinic
from alliance.exports import wide_lines_refresh
from alliance.flag_inputs import patients_to_sweep_ids
from alliance.models import Flag
from alliance.services import (
    caseload_order_refresh,
    cohort_measures_refresh,
    flag_resolve,
    mark_stale,
    recompute_patient,
    recompute_patients,
    recomputes_held,
)
from alliance.trajectories import recompute_expected_bands
from clinic import services
from clinic.devservices import DEMO_PASSWORD
from clinic.models import CoachAssignment, Enrolment, Patient, Program
from clinic.roles import Role
from outcomes import services as outcome_services
from outcomes.demo import seed_responses
from outcomes.models import Response
from sessions import services as session_services
from sessions.models import Attendance, Protocol, Session, SessionKind
from sessions.selectors import to_log_for_coach
from sessions.services import load_protocols

STAFF = [
    ("admin@rapport.test", "Avery Admin", Role.ADMIN),
    ("clinician1@rapport.test", "Dr Cleo Marsh", Role.CLINICIAN),
    ("clinician2@rapport.test", "Dr Idris Vane", Role.CLINICIAN),
    ("coach1@rapport.test", "Casey Reed", Role.COACH),
    ("coach2@rapport.test", "Morgan Lake", Role.COACH),
    ("coach3@rapport.test", "Jules Okafor", Role.COACH),
    ("coach4@rapport.test", "Sam Ibarra", Role.COACH),
]

# name, kind, modality, group capacity, protocol that generates the schedule
PROGRAMS = [
    (
        "Psilocybin for depression",
        Program.Kind.PACKAGE,
        Program.Modality.PSILOCYBIN,
        None,
        "Psilocybin for depression, two doses",
    ),
    (
        "Ketamine-assisted therapy series",
        Program.Kind.PACKAGE,
        Program.Modality.KETAMINE,
        None,
        "Ketamine-assisted therapy series",
    ),
    (
        "Group psilocybin program",
        Program.Kind.GROUP,
        Program.Modality.PSILOCYBIN,
        8,
        "Group psilocybin program",
    ),
    ("Single psilocybin session", Program.Kind.SINGLE, Program.Modality.PSILOCYBIN, None, None),
]


# Above this many new patients (current and alumni) rows are built in bulk (`--bulk auto`):
# through the services, seeding takes about a third of a second per patient.
BULK_ABOVE = 200


def _person(fake) -> dict:
    """A demo patient's name and birth date. Drawn for every number, existing or not, so both
    seeding paths and every rerun draw the same sequence."""
    return {
        "first_name": fake.first_name(),
        "last_name": fake.last_name(),
        "date_of_birth": fake.date_of_birth(minimum_age=22, maximum_age=70),
    }


def _email(person: dict) -> str:
    return f"{person['first_name']}.{person['last_name']}@example.invalid".lower().replace(" ", "")


def alumni_start(number: int, today: datetime.date) -> datetime.date:
    """Alumni started 9 days apart, over a year ago; thousands of them repeat the same ten
    years of start dates rather than reach back before the clinic's earliest date."""
    return today - datetime.timedelta(days=420 + 9 * (1 + (number - 1) % 400))


class Bulk(enum.StrEnum):
    AUTO = "auto"
    ON = "on"
    OFF = "off"


# The README's first coach workflow needs, for every coach, a session to log and a dosing
# ahead. Slots are tried in this order until one clashes with nobody's diary.
WORKFLOW_PAST_HOURS = (3, 5, 7, 26, 28)  # the session to log started this many hours ago
WORKFLOW_DOSING_DAYS = (2, 3, 4, 5, 6)  # the dosing is this many days ahead, at 13:00


def _has_dosing_this_week(coach) -> bool:
    now = timezone.now()
    return Session.objects.filter(
        facilitators=coach,
        kind=SessionKind.DOSING,
        status=Session.Status.SCHEDULED,
        scheduled_start__gte=now,
        scheduled_start__lte=now + datetime.timedelta(days=7),
    ).exists()


def _book_first_free(enrolment, *, admin, coach, kind, starts, minutes) -> None:
    for start in starts:
        try:
            session_services.session_book(
                actor=admin,
                program=enrolment.program,
                enrolment=enrolment,
                kind=kind,
                start=start,
                end=start + datetime.timedelta(minutes=minutes),
                facilitators=[coach],
            )
        except ValidationError:
            continue  # the coach or the patient is busy then: try the next slot
        return
    raise CommandError(f"No free slot for a demo {kind} with {coach.email}.")


def seed_coach_workflow(*, admin, coaches, programs) -> int:
    """Every coach gets a session waiting for their log and a dosing within the week.

    A coach who lacks either gets their own demo patient (DEMO-C<n>, single psilocybin session)
    with a preparation that ended a few hours ago and a dosing a few days ahead, both
    facilitated by the coach. Coaches who already have both are left alone, so a second run
    adds nothing. Returns how many patients it created.
    """
    program = next(p for p in programs if p.kind == Program.Kind.SINGLE)
    created = 0
    for number, coach in enumerate(coaches, start=1):
        needs_log = not to_log_for_coach(user=coach)
        needs_dosing = not _has_dosing_this_week(coach)
        if not (needs_log or needs_dosing):
            continue
        record_number = f"DEMO-C{number:03d}"
        enrolment = Enrolment.objects.filter(
            patient__record_number=record_number, program=program
        ).first()
        if enrolment is None:
            patient = services.patient_create(
                actor=admin,
                record_number=record_number,
                first_name=["Alex", "Blair", "Drew", "Emery", "Finley", "Harper"][number % 6],
                last_name=f"Demo{number}",
                date_of_birth=datetime.date(1985, 1, number % 28 + 1),
            )
            enrolment = services.patient_enrol(
                actor=admin,
                patient=patient,
                program=program,
                start_date=timezone.localdate() - datetime.timedelta(days=2),
            )
            services.coach_assign(
                actor=admin,
                enrolment=enrolment,
                coach=coach,
                role=CoachAssignment.Role.LEAD,
                start_date=enrolment.start_date,
            )
            services.patient_change_status(
                actor=admin, patient=patient, to_status=Patient.Status.IN_TREATMENT
            )
            created += 1
        now = timezone.now().replace(second=0, microsecond=0)
        if needs_log:
            _book_first_free(
                enrolment,
                admin=admin,
                coach=coach,
                kind=SessionKind.PREPARATION,
                starts=[now - datetime.timedelta(hours=h) for h in WORKFLOW_PAST_HOURS],
                minutes=90,
            )
        if needs_dosing:
            today = timezone.localdate()
            _book_first_free(
                enrolment,
                admin=admin,
                coach=coach,
                kind=SessionKind.DOSING,
                starts=[
                    timezone.make_aware(
                        datetime.datetime.combine(
                            today + datetime.timedelta(days=d), datetime.time(13, 0)
                        )
                    )
                    for d in WORKFLOW_DOSING_DAYS
                ],
                minutes=6 * 60,
            )
    return created


# The tables the flag recompute and the pages read most, analysed after a bulk load.
ANALYSED_AFTER_BULK = (
    "clinic_patient",
    "clinic_enrolment",
    "clinic_sessions_session",
    "clinic_sessions_attendance",
    "outcomes_response",
    "outcomes_score",
    "alliance_flag",
)


class Command(BaseCommand):
    help = "Seed a synthetic clinic with demo logins (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--patients", type=int, default=24, help="How many patients.")
        parser.add_argument("--seed", type=int, default=2024, help="Random seed for fake data.")
        parser.add_argument(
            "--alumni",
            type=int,
            default=20,
            help="Patients who finished the psilocybin program over a year ago, with every "
            "follow-up, so cohort analytics has numbers.",
        )
        parser.add_argument(
            "--bulk",
            choices=[b.value for b in Bulk],
            default=Bulk.AUTO.value,
            help="Build rows in bulk (on), one by one through the services (off), or in bulk "
            f"above {BULK_ABOVE} patients and alumni (auto). Both give the same clinic.",
        )

    def handle(self, *args, **options):
        # One recompute pass at the end, not a worker task per write (thousands at scale).
        with recomputes_held(), transaction.atomic():
            self._seed(**options)
        # The wide export's stored lines, once the seed has committed: built a thousand
        # patients a statement, each committing on its own, not in the seeding transaction.
        wide_lines_refresh()

    def _seed(self, *, patients: int, seed: int, alumni: int, bulk: str, **options):
        rng = random.Random(seed)
        fake = Faker("en_GB")
        fake.seed_instance(seed)
        staff = self._staff()
        admin = staff[Role.ADMIN][0]
        programs = self._programs()
        coaches = staff[Role.COACH]
        started = time.perf_counter()
        in_bulk = bulk == Bulk.ON or (bulk == Bulk.AUTO and patients + alumni > BULK_ABOVE)
        seed_with = self._seed_in_bulk if in_bulk else self._seed_through_services
        created, responses = seed_with(
            patients=patients,
            alumni=alumni,
            seed=seed,
            rng=rng,
            fake=fake,
            admin=admin,
            programs=programs,
            coaches=coaches,
        )
        built = time.perf_counter()
        if in_bulk:
            # Rows loaded in bulk leave the planner without statistics until autovacuum runs
            # (if it is on): the recompute below and the first pages would plan by guesswork,
            # about five times slower at 10,000 patients.
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {', '.join(ANALYSED_AFTER_BULK)}")
        # The expected-trajectory bands, then flags, as the nightly jobs would compute them.
        recompute_expected_bands()
        recompute_patients(patient_ids=patients_to_sweep_ids())
        # The alumni are not swept (not in care): their analytics measures once, here.
        cohort_measures_refresh()
        self._resolved_but_still_weak(admin=admin, staff=staff, programs=programs)
        if in_bulk:
            # Again, every table (1.8 s at 10,000 patients): the flags were analysed before
            # the recompute wrote them (as none), coach assignments and facilitators not at
            # all, so a coach's caseload was planned on one assignment where there are 1,466.
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        self.stdout.write(
            f"Seeded {responses} questionnaire response(s) "
            f"({'in bulk' if in_bulk else 'through the services'}: rows in "
            f"{built - started:.1f} s, flags in {time.perf_counter() - built:.1f} s)."
        )
        self._print_logins(created)

    def _seed_through_services(
        self, *, patients, alumni, seed, rng, fake, admin, programs, coaches
    ):
        created = 0
        for number in range(1, patients + 1):
            record_number = f"DEMO-{number:04d}"
            person = _person(fake)
            if Patient.objects.filter(record_number=record_number).exists():
                rng.random()
                continue
            patient = services.patient_create(
                actor=admin,
                record_number=record_number,
                **person,
                email=_email(person),
                email_consent=rng.random() < 0.7,
            )
            self._enrol(
                patient, number=number, rng=rng, admin=admin, programs=programs, coaches=coaches
            )
            created += 1
        created += self._alumni(
            alumni, seed=seed, fake=fake, admin=admin, programs=programs, coaches=coaches
        )
        # Group circles are logged once everyone is enrolled, with attendance per member.
        for session in Session.objects.filter(is_group=True).order_by("scheduled_start"):
            self._log_if_past(session, rng=rng, admin=admin)
        created += seed_coach_workflow(admin=admin, coaches=coaches, programs=programs)
        responses = 0
        for patient in Patient.objects.filter(record_number__startswith="DEMO-").order_by("pk"):
            responses += seed_responses(patient=patient, actor=admin, seed=seed)
        self._finish_alumni(admin=admin)
        return created, responses

    def _seed_in_bulk(self, *, patients, alumni, seed, rng, fake, admin, programs, coaches):
        """The same clinic as `_seed_through_services`, draw for draw, planned in memory and
        inserted in batches (alliance/demo_bulk.py); flags are computed once by the caller."""
        clinic = BulkClinic(admin=admin, coaches=coaches, programs=programs)
        existing = set(
            Patient.objects.filter(record_number__startswith="DEMO-").values_list(
                "record_number", flat=True
            )
        )
        group = next(p for p in programs if p.is_group)
        for number in range(1, patients + 1):
            record_number = f"DEMO-{number:04d}"
            person = _person(fake)
            if record_number in existing:
                rng.random()
                continue
            patient = clinic.patient(
                record_number=record_number,
                **person,
                email=_email(person),
                consent=rng.random() < 0.7,
            )
            if rng.random() < 0.08:
                continue  # a few referrals not yet enrolled
            if number % 4 == 1 and clinic.group_has_room(group):
                program = group
            else:
                program = rng.choice([p for p in programs if not p.is_group])
            start = clinic.today - datetime.timedelta(days=rng.randint(0, 25))
            if program.is_group:
                start = program.start_date
            enrolment = clinic.enrol(patient, program=program, start_date=start)
            lead = rng.choice(coaches)
            clinic.assign(enrolment, coach=lead, role=CoachAssignment.Role.LEAD, start_date=start)
            if rng.random() < 0.5:
                other = rng.choice([c for c in coaches if c != lead])
                clinic.assign(
                    enrolment, coach=other, role=CoachAssignment.Role.INTEGRATION, start_date=start
                )
            if rng.random() < 0.6:
                clinic.start_treatment(patient)
            clinic.log_past_sessions(enrolment, rng=rng)
        alumni_rng = random.Random(seed + 1)
        program = next(p for p in programs if p.name == "Psilocybin for depression")
        finished = []
        for number in range(1, alumni + 1):
            record_number = f"DEMO-A{number:03d}"
            person = _person(fake)
            if record_number in existing:
                continue
            patient = clinic.patient(record_number=record_number, **person)
            start = alumni_start(number, clinic.today)
            enrolment = clinic.enrol(patient, program=program, start_date=start)
            clinic.assign(
                enrolment,
                coach=alumni_rng.choice(coaches),
                role=CoachAssignment.Role.LEAD,
                start_date=start,
            )
            clinic.start_treatment(patient)
            clinic.log_past_sessions(enrolment, rng=alumni_rng)
            finished.append((patient, enrolment))
        clinic.log_group_sessions(rng=rng)
        for patient, enrolment in finished:
            last_end = max(p.row.scheduled_end for p in enrolment.planned_sessions)
            clinic.finish(patient, enrolment, last_day=timezone.localdate(last_end))
        responses = clinic.save(seed=seed)
        # What the flag engine's schedule_changed receiver does for each change, once.
        stale = [p.pk for p in clinic.stale.values()]
        mark_stale(patient_ids=stale)
        caseload_order_refresh(patient_ids=stale)
        created = len(clinic.patients)
        created += seed_coach_workflow(admin=admin, coaches=coaches, programs=programs)
        return created, responses

    def _alumni(self, count, *, seed, fake, admin, programs, coaches) -> int:
        """Patients whose whole course (two doses, follow-ups to 12 months) lies in the past."""
        rng = random.Random(seed + 1)  # its own stream: the current patients stay the same
        program = next(p for p in programs if p.name == "Psilocybin for depression")
        created = 0
        for number in range(1, count + 1):
            record_number = f"DEMO-A{number:03d}"
            person = _person(fake)
            if Patient.objects.filter(record_number=record_number).exists():
                continue
            patient = services.patient_create(actor=admin, record_number=record_number, **person)
            start = alumni_start(number, timezone.localdate())
            enrolment = services.patient_enrol(
                actor=admin, patient=patient, program=program, start_date=start
            )
            services.coach_assign(
                actor=admin,
                enrolment=enrolment,
                coach=rng.choice(coaches),
                role=CoachAssignment.Role.LEAD,
                start_date=start,
            )
            services.patient_change_status(
                actor=admin, patient=patient, to_status=Patient.Status.IN_TREATMENT
            )
            self._log_past_sessions(enrolment, rng=rng, admin=admin)
            created += 1
        return created

    def _resolved_but_still_weak(self, *, admin, staff, programs) -> None:
        """One patient to show what readiness is for: a bond of 2.5 after the last
        preparation, a weak-bond flag a clinician resolved without a new rating, and ketamine
        tomorrow. Every page reads "At risk — resolved"; marking it ready asks for a note."""
        if Patient.objects.filter(record_number="DEMO-R001").exists():
            return
        program = next(p for p in programs if p.name == "Ketamine-assisted therapy series")
        coach, clinician = staff[Role.COACH][0], staff[Role.CLINICIAN][0]
        patient = services.patient_create(
            actor=admin,
            record_number="DEMO-R001",
            first_name="Robin",
            last_name="Ashdown",
            date_of_birth=datetime.date(1979, 4, 2),
        )
        start = timezone.localdate() - datetime.timedelta(days=6)  # dosing on day 7: tomorrow
        enrolment = services.patient_enrol(
            actor=admin, patient=patient, program=program, start_date=start
        )
        services.coach_assign(
            actor=admin,
            enrolment=enrolment,
            coach=coach,
            role=CoachAssignment.Role.LEAD,
            start_date=start,
        )
        services.patient_change_status(
            actor=admin, patient=patient, to_status=Patient.Status.IN_TREATMENT
        )
        for session in enrolment.sessions.filter(kind=SessionKind.PREPARATION).order_by(
            "scheduled_start"
        ):
            session_services.session_log(
                actor=coach, session=session, status=Session.Status.COMPLETED, duration_minutes=60
            )
        dosing = (
            enrolment.sessions.filter(kind=SessionKind.DOSING).order_by("scheduled_start").first()
        )
        dosing.facilitators.add(coach)
        session_services.dosing_record(
            actor=clinician,
            session=dosing,
            substance=Program.Modality.KETAMINE,
            dose_mg=Decimal("56"),
            route=Session.Route.INTRANASAL,
        )
        seed_responses(patient=patient, actor=coach, seed=0)
        last_preparation = enrolment.sessions.filter(kind=SessionKind.PREPARATION).last()
        wai = Response.objects.filter(
            patient=patient, session=last_preparation, version__instrument__code="wai-sr"
        ).first()
        bond_2_5 = {n: (2 if n in (3, 5) else 3 if n in (7, 9) else 4) for n in range(1, 13)}
        if wai is None:
            outcome_services.response_record(
                actor=coach,
                patient=patient,
                version=outcome_services.latest_version("wai-sr"),
                answers=bond_2_5,
                administered_at=last_preparation.scheduled_end,
                session=last_preparation,
                announce=False,
            )
        else:
            outcome_services.response_edit(
                actor=coach, response=wai, answers=bond_2_5, reason="Demo: a weak bond"
            )
        recompute_patient(patient_id=patient.pk)
        for flag in Flag.objects.filter(
            patient=patient, kind=Flag.Kind.WEAK_BOND, status=Flag.Status.OPEN
        ):
            flag_resolve(
                actor=clinician,
                flag=flag,
                note="Spoke with Robin; an extra preparation call is booked.",
            )
        recompute_patient(patient_id=patient.pk)

    def _finish_alumni(self, *, admin) -> None:
        """After their answers are in: completed, enrolment closed, coaches released."""
        alumni = Patient.objects.filter(
            record_number__startswith="DEMO-A", status=Patient.Status.IN_TREATMENT
        )
        for patient in alumni:
            for status in (Patient.Status.FOLLOW_UP, Patient.Status.COMPLETED):
                services.patient_change_status(actor=admin, patient=patient, to_status=status)
            last_session = (
                Session.objects.filter(attendances__patient=patient)
                .order_by("-scheduled_end")
                .values_list("scheduled_end", flat=True)
                .first()
            )
            for assignment in CoachAssignment.objects.filter(
                enrolment__patient=patient, end_date__isnull=True
            ):
                services.assignment_end(
                    actor=admin,
                    assignment=assignment,
                    end_date=timezone.localdate(last_session) if last_session else None,
                )

    def _staff(self) -> dict[Role, list]:
        User = get_user_model()
        staff: dict[Role, list] = {role: [] for role in Role}
        for email, name, role in STAFF:
            user = User.objects.filter(email=email).first()
            if user is None:
                user = User.objects.create_user(
                    email=email,
                    password=DEMO_PASSWORD,
                    display_name=name,
                    is_staff=role == Role.ADMIN,
                    is_superuser=role == Role.ADMIN,
                )
            services.user_set_role(user=user, role=role)
            staff[role].append(user)
        return staff

    def _programs(self) -> list[Program]:
        load_protocols()
        start = timezone.localdate() - datetime.timedelta(days=20)
        programs = []
        for name, kind, modality, capacity, protocol in PROGRAMS:
            program, _ = Program.objects.get_or_create(
                name=name,
                defaults={
                    "kind": kind,
                    "modality": modality,
                    "capacity": capacity,
                    "start_date": start,
                    "protocol": Protocol.objects.filter(name=protocol).first(),
                },
            )
            programs.append(program)
        return programs

    def _enrol(self, patient, *, number, rng, admin, programs, coaches) -> None:
        group = next(p for p in programs if p.is_group)
        roll = rng.random()
        if roll < 0.08:
            return  # a few referrals not yet enrolled
        group_has_room = (
            group.enrolments.filter(status=Enrolment.Status.ACTIVE).count() < group.capacity
        )
        if number % 4 == 1 and group_has_room:  # every fourth patient joins the group
            program = group
        else:
            program = rng.choice([p for p in programs if not p.is_group])
        start = timezone.localdate() - datetime.timedelta(days=rng.randint(0, 25))
        if program.is_group:
            start = program.start_date
        enrolment = services.patient_enrol(
            actor=admin, patient=patient, program=program, start_date=start
        )
        lead = rng.choice(coaches)
        services.coach_assign(
            actor=admin,
            enrolment=enrolment,
            coach=lead,
            role=CoachAssignment.Role.LEAD,
            start_date=start,
        )
        if rng.random() < 0.5:
            other = rng.choice([c for c in coaches if c != lead])
            services.coach_assign(
                actor=admin,
                enrolment=enrolment,
                coach=other,
                role=CoachAssignment.Role.INTEGRATION,
                start_date=start,
            )
        if rng.random() < 0.6:
            services.patient_change_status(
                actor=admin, patient=patient, to_status=Patient.Status.IN_TREATMENT
            )
        self._log_past_sessions(enrolment, rng=rng, admin=admin)

    def _log_past_sessions(self, enrolment, *, rng, admin) -> None:
        """Sessions already past are logged as a coach would have (a few no-shows)."""
        past = Session.objects.filter(
            attendances__enrolment=enrolment,
            status=Session.Status.SCHEDULED,
            scheduled_end__lt=timezone.now(),
        ).order_by("scheduled_start")
        # Sessions of the last day stay unlogged: coaches find them on their caseload.
        yesterday = timezone.now() - datetime.timedelta(days=1)
        for session in past.filter(is_group=False, scheduled_end__lt=yesterday):
            self._log_if_past(session, rng=rng, admin=admin)

    def _log_if_past(self, session, *, rng, admin) -> None:
        if session.status != Session.Status.SCHEDULED or session.scheduled_end > timezone.now():
            return
        no_show = not session.is_group and rng.random() < 0.07
        attendance = None
        if session.is_group:
            attendance = {
                a.patient_id: Attendance.Status.ABSENT
                if rng.random() < 0.1
                else Attendance.Status.ATTENDED
                for a in session.attendances.all()
            }
        if session.is_dosing and not no_show:
            # Historical dosings: the paper monitoring form was kept; the discharge is
            # entered afterwards by a clinician (an override, since no vitals are typed in).
            for place in session.attendances.all():
                if attendance and attendance.get(place.patient_id) == "absent":
                    continue
                session_services.discharge_record(
                    actor=admin,
                    session=session,
                    patient=place.patient,
                    escort="Partner drove home",
                    sedation_resolved=True,
                    override_note="Entered afterwards from the paper monitoring form (demo data).",
                )
        session_services.session_log(
            actor=session.facilitators.first() or admin,
            session=session,
            status=Session.Status.NO_SHOW if no_show else Session.Status.COMPLETED,
            duration_minutes=None if no_show else session.protocol_step.duration_minutes,
            notes="Did not attend; rebooking." if no_show else "",
            attendance=attendance,
        )

    def _print_logins(self, created: int) -> None:
        self.stdout.write(self.style.SUCCESS(f"Seeded {created} new patient(s)."))
        self.stdout.write(f"Demo logins (password for all: {DEMO_PASSWORD}):")
        for email, name, role in STAFF:
            self.stdout.write(f"  {role.label:<10} {email:<26} {name}")
