import datetime

import factory
from django.contrib.auth.models import Group
from django.utils import timezone

from clinic.models import CoachAssignment, Enrolment, Patient, Program, User
from clinic.roles import Role

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"staff{n}@clinic.test")
    display_name = factory.Faker("name")
    password = factory.django.Password(PASSWORD)

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        if create and extracted:
            self.groups.add(Group.objects.get(name=Role(extracted).value))


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    record_number = factory.Sequence(lambda n: f"RP-{n:05d}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    date_of_birth = datetime.date(1985, 6, 1)
    email = factory.LazyAttribute(lambda p: f"{p.record_number.lower()}@example.invalid")


class ProgramFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Program

    name = factory.Sequence(lambda n: f"Program {n}")
    kind = Program.Kind.PACKAGE
    modality = Program.Modality.PSILOCYBIN
    start_date = factory.LazyFunction(timezone.localdate)


class EnrolmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Enrolment

    patient = factory.SubFactory(PatientFactory)
    program = factory.SubFactory(ProgramFactory)
    start_date = factory.LazyFunction(timezone.localdate)
    enrolled_by = factory.SubFactory(UserFactory, role=Role.ADMIN)


class CoachAssignmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CoachAssignment

    enrolment = factory.SubFactory(EnrolmentFactory)
    coach = factory.SubFactory(UserFactory, role=Role.COACH)
    role = CoachAssignment.Role.LEAD
    start_date = factory.LazyFunction(timezone.localdate)
    assigned_by = factory.SelfAttribute("enrolment.enrolled_by")


def protocol_named(name: str):
    # Shipped protocols are loaded by a data migration, so every test database has them.
    from sessions.models import Protocol

    return Protocol.objects.get(name=name)
