from crispy_forms.helper import FormHelper
from crispy_forms.layout import Submit
from django import forms
from django.contrib.auth import get_user_model

from .models import AdverseEvent, Attendance, Room, Session, SessionKind


class DateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, **kwargs):
        super().__init__(format="%Y-%m-%dT%H:%M", **kwargs)


def _helper(label: str) -> FormHelper:
    helper = FormHelper()
    helper.form_tag = False
    helper.add_input(Submit("submit", label))
    return helper


class SessionLogForm(forms.Form):
    status = forms.ChoiceField(
        choices=[
            (Session.Status.COMPLETED, "Completed"),
            (Session.Status.NO_SHOW, "No-show"),
            (Session.Status.CANCELLED, "Cancelled"),
        ],
        widget=forms.RadioSelect,
        initial=Session.Status.COMPLETED,
    )
    duration_minutes = forms.IntegerField(
        label="Duration (minutes)", min_value=5, max_value=720, required=False
    )
    notes = forms.CharField(
        label="Short note",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="For a no-show or cancellation, the reason.",
    )

    def __init__(self, *args, session: Session, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            planned = (session.scheduled_end - session.scheduled_start).total_seconds() // 60
            self.fields["duration_minutes"].initial = int(planned)
        self.attendees = []
        if session.is_group:
            for row in session.attendances.all():
                name = f"attendance_{row.patient_id}"
                self.fields[name] = forms.ChoiceField(
                    # Named only when the user may see the patient (selectors.name_attendees).
                    label=getattr(row, "shown_name", "Another participant"),
                    choices=[
                        (Attendance.Status.ATTENDED, "Attended"),
                        (Attendance.Status.LATE, "Late"),
                        (Attendance.Status.ABSENT, "Absent"),
                    ],
                    initial=Attendance.Status.ATTENDED,
                )
                self.attendees.append((row.patient_id, name))
        self.helper = _helper("Save session log")

    def attendance(self) -> dict[int, str]:
        return {pid: self.cleaned_data[name] for pid, name in self.attendees}


class SessionCorrectionForm(SessionLogForm):
    """The log form filled in with what was logged, plus why it is being corrected."""

    reason = forms.CharField(
        label="Why is the log being corrected?",
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args, session: Session, **kwargs):
        super().__init__(*args, session=session, **kwargs)
        if not self.is_bound:
            self.fields["status"].initial = session.status
            self.fields["duration_minutes"].initial = session.duration_minutes
            completed = session.status == Session.Status.COMPLETED
            self.fields["notes"].initial = session.notes if completed else session.status_reason
            for patient_id, name in self.attendees:
                row = next(a for a in session.attendances.all() if a.patient_id == patient_id)
                if row.status in dict(self.fields[name].choices):
                    self.fields[name].initial = row.status
        self.helper = _helper("Save correction")


class RescheduleForm(forms.Form):
    start = forms.DateTimeField(widget=DateTimeInput(), label="New start")
    end = forms.DateTimeField(widget=DateTimeInput(), label="New end")
    room = forms.ModelChoiceField(queryset=Room.objects.filter(is_active=True), required=False)
    shift_following = forms.BooleanField(
        required=False,
        label="Also move every later session by the same amount",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _helper("Move session")


class CancelForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _helper("Cancel session")


class DosingForm(forms.Form):
    substance = forms.ChoiceField(
        choices=[("", "—")] + list(Session._meta.get_field("substance").choices)
    )
    dose_mg = forms.DecimalField(label="Dose (mg)", max_digits=7, decimal_places=2, required=False)
    weight_kg = forms.DecimalField(
        label="Weight (kg)",
        max_digits=5,
        decimal_places=1,
        required=False,
        help_text="Needed for ketamine by injection (dose per kg).",
    )
    route = forms.ChoiceField(choices=[("", "—")] + list(Session.Route.choices), required=False)
    actual_start = forms.DateTimeField(widget=DateTimeInput(), required=False)
    actual_end = forms.DateTimeField(widget=DateTimeInput(), required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _helper("Save dosing details")


class BookForm(forms.Form):
    kind = forms.ChoiceField(choices=SessionKind.choices)
    label = forms.CharField(max_length=80, required=False, help_text="E.g. Extra preparation")
    start = forms.DateTimeField(widget=DateTimeInput())
    end = forms.DateTimeField(widget=DateTimeInput())
    room = forms.ModelChoiceField(queryset=Room.objects.filter(is_active=True), required=False)
    facilitators = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )

    def __init__(self, *args, coaches, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["facilitators"].queryset = coaches
        self.helper = _helper("Book session")


def _number(label: str, *, required: bool = True, decimal: bool = False):
    """A number box the tablet opens with its number pad; ranges are checked by the service,
    which names the plausible range in its message."""
    attrs = {"inputmode": "decimal" if decimal else "numeric", "autocomplete": "off"}
    if decimal:
        return forms.DecimalField(
            label=label,
            required=required,
            max_digits=4,
            decimal_places=1,
            widget=forms.NumberInput(attrs={**attrs, "step": "0.1"}),
        )
    return forms.IntegerField(label=label, required=required, widget=forms.NumberInput(attrs=attrs))


class VitalsForm(forms.Form):
    """One set of vital signs. The token is made when the form is shown, so a double tap
    sends the same token twice and records one reading."""

    token = forms.UUIDField(widget=forms.HiddenInput)
    point = forms.ChoiceField(label="Observation point", required=False)
    measured_at = forms.DateTimeField(
        label="Measured at",
        widget=DateTimeInput(),
        help_text="Entering it later? Keep the time it was measured.",
    )
    systolic = _number("Systolic (mmHg)")
    diastolic = _number("Diastolic (mmHg)")
    heart_rate = _number("Heart rate (/min)")
    spo2 = _number("SpO₂ (%)")
    respiratory_rate = _number("Respiratory rate (/min)", required=False)
    temperature_c = _number("Temperature (°C)", required=False, decimal=True)
    taken_by = forms.ModelChoiceField(
        queryset=get_user_model().objects.none(),
        label="Taken by",
        required=False,
        empty_label="Me",
    )
    note = forms.CharField(max_length=200, required=False)

    def __init__(self, *args, schedule, staff, recorded=(), patients=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["taken_by"].queryset = staff
        self.fields["point"].choices = [("", "Not at a set point")] + [
            (p.code, f"{p.label}{' (recorded)' if p.code in recorded else ''}")
            for p in schedule.points
        ]
        if patients:
            self.fields["patient"] = forms.ChoiceField(
                choices=[(p.pk, name) for p, name in patients], label="Patient"
            )
            self.order_fields(["patient"])
        self.helper = _helper("Save vital signs")


class AdverseEventForm(forms.Form):
    token = forms.UUIDField(widget=forms.HiddenInput)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))
    onset_at = forms.DateTimeField(label="Onset", widget=DateTimeInput())
    grade = forms.ChoiceField(
        label="Severity grade", choices=AdverseEvent.Grade.choices, widget=forms.RadioSelect
    )
    serious = forms.BooleanField(
        required=False,
        label="Serious (meets one of the criteria below)",
        help_text="A serious event alerts the clinicians at once.",
    )
    serious_criteria = forms.MultipleChoiceField(
        label="Seriousness criteria",
        required=False,
        choices=AdverseEvent.Criterion.choices,
        widget=forms.CheckboxSelectMultiple,
    )
    relatedness = forms.ChoiceField(
        label="Related to the treatment", choices=[("", "—")] + AdverseEvent.Relatedness.choices
    )
    action_taken = forms.CharField(
        label="Action taken", required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    outcome = forms.ChoiceField(choices=AdverseEvent.Outcome.choices)
    resolved_on = forms.DateField(
        label="Resolution date",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="With recovered, lasting effects or fatal: closes the event.",
    )

    def __init__(self, *args, submit="Record adverse event", patients=(), **kwargs):
        super().__init__(*args, **kwargs)
        if patients:
            self.fields["patient"] = forms.ChoiceField(
                choices=[(p.pk, name) for p, name in patients], label="Patient"
            )
            self.order_fields(["patient"])
        self.helper = _helper(submit)


class AdverseEventEditForm(AdverseEventForm):
    reason = forms.CharField(
        label="Why is the record being changed?", widget=forms.Textarea(attrs={"rows": 2})
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, submit="Save changes", **kwargs)
        del self.fields["token"]


class DischargeForm(forms.Form):
    escort = forms.CharField(
        label="Escort or transport home",
        max_length=200,
        required=False,
        help_text="Who is taking the patient home, or how they travel (not driving).",
    )
    override_note = forms.CharField(
        label="Discharge despite the check (clinicians): why",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args, patients=(), **kwargs):
        super().__init__(*args, **kwargs)
        if patients:
            self.fields["patient"] = forms.ChoiceField(
                choices=[(p.pk, name) for p, name in patients], label="Patient"
            )
            self.order_fields(["patient"])
        self.helper = _helper("Record discharge")


class RoomForm(forms.Form):
    name = forms.CharField(max_length=80)
    is_active = forms.BooleanField(
        label="In use (offered when booking)", required=False, initial=True
    )

    def __init__(self, *args, submit_label="Save room", **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _helper(submit_label)


class TimeInput(forms.TimeInput):
    input_type = "time"

    def __init__(self, **kwargs):
        super().__init__(format="%H:%M", **kwargs)
