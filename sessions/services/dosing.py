"""Dosing details (substance, dose, route, weight), checked against sane ranges that
catch typing mistakes.
"""

import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction

from clinic import dates
from clinic.audit import audit_record
from clinic.models import AuditEvent, Program

from ..models import (
    Session,
)

# Sane dose ranges by substance and unit, for catching typing mistakes (mg vs µg, a missing
# decimal point), not clinical limits:
# - psilocybin 1-60 mg oral (trials used 10-30 mg/70 kg, or 0.2-0.4 mg/kg);
# - MDMA 40-180 mg (the phase 3 trials: 80-120 mg, then a 40-60 mg supplemental half dose);
# - ketamine by injection (IV, IM) 0.1-2 mg/kg, so the weight is required; intranasal 5-200 mg
#   (esketamine is 28-84 mg); oral or sublingual 5-400 mg, because only about a fifth to a
#   third is absorbed that way and lozenges of 300-400 mg are in use.
DOSE_RANGES_MG = {
    Program.Modality.PSILOCYBIN: (Decimal("1"), Decimal("60")),
    Program.Modality.MDMA: (Decimal("40"), Decimal("180")),
    Program.Modality.KETAMINE: (Decimal("5"), Decimal("200")),
}


KETAMINE_MG_PER_KG = (Decimal("0.1"), Decimal("2"))


KETAMINE_ORAL_MG = (Decimal("5"), Decimal("400"))


PARENTERAL = {Session.Route.INTRAVENOUS, Session.Route.INTRAMUSCULAR}


ORAL = {Session.Route.ORAL, Session.Route.SUBLINGUAL}


def _check_dose(*, substance, dose_mg, weight_kg, route) -> dict:
    errors = {}
    if not substance:
        errors["substance"] = "Name the substance given."
    if dose_mg is None:
        errors["dose_mg"] = "Enter the dose in mg."
        return errors
    if dose_mg <= 0:
        errors["dose_mg"] = "The dose must be more than 0 mg."
        return errors
    if not route:
        errors["route"] = "Choose the route."
    if substance == Program.Modality.KETAMINE and route in PARENTERAL:
        if not weight_kg:
            errors["weight_kg"] = "Ketamine by injection is dosed by weight: enter the weight."
        else:
            low, high = KETAMINE_MG_PER_KG
            per_kg = dose_mg / weight_kg
            if not low <= per_kg <= high:
                errors["dose_mg"] = (
                    f"{per_kg:.2f} mg/kg is outside the expected {low}-{high} mg/kg for "
                    "ketamine by injection. Check the dose and the weight."
                )
    elif substance in DOSE_RANGES_MG:
        low, high = DOSE_RANGES_MG[substance]
        if substance == Program.Modality.KETAMINE and route in ORAL:
            low, high = KETAMINE_ORAL_MG
        if not low <= dose_mg <= high:
            label = Program.Modality(substance).label.lower()
            errors["dose_mg"] = (
                f"{dose_mg} mg is outside the expected {low}-{high} mg for {label}. "
                "Check the unit (mg, not µg) and the decimal point."
            )
    if weight_kg is not None and not Decimal("25") <= weight_kg <= Decimal("300"):
        errors["weight_kg"] = "Enter a weight between 25 and 300 kg."
    return errors


@transaction.atomic
def dosing_record(
    *,
    actor,
    session: Session,
    substance: str,
    dose_mg: Decimal | None,
    route: str,
    weight_kg: Decimal | None = None,
    actual_start: datetime.datetime | None = None,
    actual_end: datetime.datetime | None = None,
) -> Session:
    session = Session.objects.select_for_update().get(pk=session.pk)
    if not session.is_dosing:
        raise ValidationError("Dosing details belong to dosing sessions only.")
    errors = _check_dose(substance=substance, dose_mg=dose_mg, weight_kg=weight_kg, route=route)
    if message := dates.planned_day_error(actual_start, what="the dosing's start"):
        errors["actual_start"] = message
    if message := dates.planned_day_error(actual_end, what="the dosing's end"):
        errors["actual_end"] = message
    if not errors.keys() & {"actual_start", "actual_end"}:
        if actual_start and actual_end and actual_end <= actual_start:
            errors["actual_end"] = "The dosing must end after it starts."
        elif message := dates.length_error(actual_start, actual_end, what="a dosing"):
            errors["actual_end"] = message
    if errors:
        raise ValidationError(errors)
    session.substance, session.dose_mg, session.route = substance, dose_mg, route
    session.weight_kg, session.actual_start, session.actual_end = (
        weight_kg,
        actual_start,
        actual_end,
    )
    session.save()
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        target=session,
        patient=session.enrolment.patient if session.enrolment else None,
        detail={"dosing": "recorded"},
    )
    return session
