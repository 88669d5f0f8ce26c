from django.http import Http404

from clinic.access import patients_visible_to

from .models import Instrument, InstrumentVersion, Response


def get_response_for(user, public_id) -> Response:
    try:
        return (
            Response.objects.select_related("patient", "version__instrument", "session")
            .prefetch_related("scores")
            .get(public_id=public_id, patient__in=patients_visible_to(user))
        )
    except (Response.DoesNotExist, ValueError) as exc:
        raise Http404("No such response.") from exc


def wording_for(version: InstrumentVersion) -> dict[int, str]:
    return dict(version.wording.values_list("item", "text"))


def due_for_session(session, codes: list[str]) -> list[dict]:
    """The session's due instruments, each with the response already entered for it, if any."""
    instruments = {i.code: i for i in Instrument.objects.filter(code__in=codes)}
    answered = {
        r.version.instrument.code: r
        for r in Response.objects.filter(session=session).select_related("version__instrument")
    }
    return [
        {"code": code, "instrument": instruments.get(code), "response": answered.get(code)}
        for code in codes
        if code in instruments
    ]


def responses_for(*, patient) -> list[Response]:
    return list(
        Response.objects.filter(patient=patient)
        .select_related("version__instrument", "session")
        .prefetch_related("scores")
        .order_by("-administered_at")
    )
