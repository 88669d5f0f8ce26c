from crispy_forms.helper import FormHelper
from crispy_forms.layout import Column, Layout, Row, Submit
from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.utils import timezone

from . import dates
from .auth import MAX_USERNAME_LENGTH, normalise_username
from .models import CoachAssignment, Patient, Program
from .roles import Role
from .selectors import SEARCH_MAX_LENGTH


class DateInput(forms.DateInput):
    """A browser date picker. Its value must be ISO (yyyy-mm-dd): browsers drop a value in the
    clinic's display format (27/11/2026), so an edit form would blank the date it shows."""

    input_type = "date"

    def __init__(self, **kwargs):
        super().__init__(format="%Y-%m-%d", **kwargs)


def _helper(submit_label: str) -> FormHelper:
    helper = FormHelper()
    helper.form_tag = False  # templates render the <form> with a one-shot submit guard
    helper.add_input(Submit("submit", submit_label))
    return helper


class PatientForm(forms.ModelForm):
    class Meta:
        model = Patient
        fields = [
            "record_number",
            "first_name",
            "last_name",
            "date_of_birth",
            "email",
            "phone",
            "email_consent",
        ]
        widgets = {"date_of_birth": DateInput()}

    def __init__(self, *args, submit_label="Save patient", **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["date_of_birth"].widget.attrs["max"] = timezone.localdate().isoformat()
        self.fields["date_of_birth"].widget.attrs["min"] = dates.EARLIEST_BIRTH.isoformat()
        self.helper = _helper(submit_label)
        self.helper.layout = Layout(
            "record_number",
            Row(Column("first_name"), Column("last_name")),
            "date_of_birth",
            Row(Column("email"), Column("phone")),
            "email_consent",
        )

    def clean_date_of_birth(self):
        # Here as well as in the service: the model's own check has no words for a person.
        born = self.cleaned_data["date_of_birth"]
        if message := dates.birth_error(born):
            raise forms.ValidationError(message)
        return born

    def validate_unique(self):
        # Uniqueness is the service's rule (it also ignores case); avoid a second query here.
        pass


class SearchForm(forms.Form):
    """The name / record number search on the caseload and the patient list (GET)."""

    q = forms.CharField(
        required=False,
        max_length=SEARCH_MAX_LENGTH,
        error_messages={
            "max_length": "Search for a name or record number of at most %(limit_value)d "
            "characters."
        },
    )

    def query(self) -> str:
        """The words to search for, or "" when there is nothing (valid) to search."""
        return self.cleaned_data["q"] if self.is_valid() else ""


class StatusChangeForm(forms.Form):
    to_status = forms.ChoiceField(label="New status")
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="Required when withdrawing.",
    )

    def __init__(self, *args, patient: Patient, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["to_status"].choices = [
            (s, Patient.Status(s).label) for s in patient.allowed_next_statuses()
        ]
        self.helper = _helper("Change status")


class EnrolmentForm(forms.Form):
    program = forms.ModelChoiceField(queryset=Program.objects.none())
    start_date = forms.DateField(widget=DateInput(), initial=timezone.localdate)

    def __init__(self, *args, programs, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["program"].queryset = programs
        self.helper = _helper("Enrol")


class CoachChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return f"{obj.display_name} <{obj.email}>"


class AssignmentForm(forms.Form):
    coach = CoachChoiceField(queryset=get_user_model().objects.none())
    role = forms.ChoiceField(choices=CoachAssignment.Role.choices)
    start_date = forms.DateField(widget=DateInput(), initial=timezone.localdate)

    def __init__(self, *args, coaches, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["coach"].queryset = coaches
        self.helper = _helper("Assign coach")


class ReassignmentForm(forms.Form):
    coach = CoachChoiceField(queryset=get_user_model().objects.none(), label="New coach")
    start_date = forms.DateField(
        widget=DateInput(),
        initial=timezone.localdate,
        help_text="The current coach's assignment ends on this date.",
    )

    def __init__(self, *args, coaches, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["coach"].queryset = coaches
        self.helper = _helper("Reassign")


class EndAssignmentForm(forms.Form):
    end_date = forms.DateField(widget=DateInput(), initial=timezone.localdate)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _helper("End assignment")


class NormalisedUsernameMixin:
    """Trim and lower-case the e-mail address before authenticating, so the lockout (which
    sees the same spelling) counts every spelling of an account as one, and refuse a
    username no account can have before it reaches the lockout's 255-character column."""

    def clean_username(self):
        username = normalise_username(self.cleaned_data.get("username"))
        if len(username) > MAX_USERNAME_LENGTH:
            raise forms.ValidationError(
                "That is longer than any e-mail address we know.", code="too_long"
            )
        return username


class LoginForm(NormalisedUsernameMixin, AuthenticationForm):
    pass


class AdminLoginForm(NormalisedUsernameMixin, AdminAuthenticationForm):
    """The Django admin is for superusers; an admin signs in on the app's own sign-in page."""

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        if not user.is_superuser:
            raise forms.ValidationError(
                self.error_messages["invalid_login"],
                code="invalid_login",
                params={"username": self.username_field.verbose_name},
            )


class TokenForm(forms.Form):
    token = forms.CharField(
        label="Six-digit code from your authenticator app",
        max_length=6,
        min_length=6,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _helper("Verify")


def apply_service_errors(form: forms.Form, error) -> None:
    """Show a service's ValidationError next to the matching field (or at the top)."""
    if hasattr(error, "error_dict"):
        for field, messages in error.message_dict.items():
            form.add_error(field if field in form.fields else None, messages)
    else:
        form.add_error(None, error.messages)


ROLE_CHOICES = [(role.value, role.label) for role in Role]


class InviteForm(forms.Form):
    """An admin invites a member of staff: they choose their own password from the e-mail."""

    display_name = forms.CharField(label="Name", max_length=150)
    email = forms.EmailField(label="E-mail address")
    role = forms.ChoiceField(label="Role", choices=ROLE_CHOICES, widget=forms.RadioSelect)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _helper("Send the invitation")


class StaffForm(forms.Form):
    display_name = forms.CharField(label="Name", max_length=150)
    email = forms.EmailField(label="E-mail address")
    role = forms.ChoiceField(label="Role", choices=ROLE_CHOICES, widget=forms.RadioSelect)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _helper("Save")


class ProgramForm(forms.ModelForm):
    class Meta:
        model = Program
        fields = ["name", "kind", "modality", "protocol", "capacity", "start_date", "description"]
        widgets = {"start_date": DateInput(), "description": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args, submit_label="Create program", **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["start_date"].initial = timezone.localdate
        self.helper = _helper(submit_label)
