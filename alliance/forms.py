from urllib.parse import urlencode

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Submit
from django import forms

from clinic.forms import DateInput
from clinic.models import Program
from clinic.selectors import coaches

from . import analytics
from .models import Flag, FlagRule


class ResolveForm(forms.Form):
    note = forms.CharField(
        label="What was done",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Required. For example: extra preparation session booked; coach changed.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.add_input(Submit("resolve", "Resolve flag"))


class SignOffForm(forms.Form):
    note = forms.CharField(
        label="Why the dosing should go ahead",
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="Required when risks are listed. It is kept with your name in the record.",
    )

    def __init__(self, *args, has_risks: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["note"].required = has_risks
        if not has_risks:
            self.fields["note"].label = "Note (optional)"
            self.fields["note"].help_text = ""
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.add_input(
            Submit("sign", "Confirm despite these risks" if has_risks else "Mark ready")
        )


class WorklistFilterForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[("", "All kinds"), *Flag.Kind.choices], required=False, label="Kind"
    )
    program = forms.ModelChoiceField(
        queryset=Program.objects.order_by("name"), required=False, empty_label="All programs"
    )
    coach = forms.ModelChoiceField(queryset=None, required=False, empty_label="All coaches")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["coach"].queryset = coaches()
        self.fields["coach"].label_from_instance = lambda user: user.display_name
        for field in self.fields.values():
            field.widget.attrs["class"] = "form-select"

    def query_string(self) -> str:
        """The chosen filters, for the pagination links."""
        chosen = {
            name: (value.pk if hasattr(value, "pk") else value)
            for name, value in self.cleaned_data.items()
            if value
        }
        return urlencode(chosen)


class FlagRuleForm(forms.ModelForm):
    class Meta:
        model = FlagRule
        fields = [
            "weak_bond_below",
            "weak_bond_days_before_dosing",
            "percentile",
            "percentile_min_ratings",
            "bond_drop_rci",
            "missing_hours_before_dosing",
            "srs_below",
            "srs_drop",
            "wai_total_below",
            "off_track_percentile",
            "band_min_patients",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.add_input(Submit("save", "Save thresholds"))


class ExportForm(forms.Form):
    form = forms.ChoiceField(
        label="Format",
        choices=[
            ("long", "CSV, long: one row per score"),
            ("wide", "CSV, wide: one row per patient and time point"),
            (
                "fhir",
                "FHIR R4 Bundle (JSON): Questionnaires and QuestionnaireResponses, "
                "built in the background and offered below when ready",
            ),
        ],
        widget=forms.RadioSelect,
        initial="long",
    )

    def __init__(self, *args, allow_identified: bool, **kwargs):
        super().__init__(*args, **kwargs)
        if allow_identified:
            self.fields["identified"] = forms.BooleanField(
                required=False,
                label="Include names, record numbers and dates (identified)",
            )
            self.fields["reason"] = forms.CharField(
                required=False, help_text="Required for an identified export; it is audited."
            )
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.add_input(Submit("download", "Download"))


class CohortFilterForm(forms.Form):
    """Read from the query string, so a filtered page can be bookmarked and shared."""

    program = forms.ModelChoiceField(
        queryset=Program.objects.order_by("name"), required=False, empty_label="All programs"
    )
    modality = forms.ChoiceField(
        choices=[("", "All modalities"), *Program.Modality.choices], required=False
    )
    start = forms.DateField(label="Dosing from", required=False, widget=DateInput())
    end = forms.DateField(label="Dosing until", required=False, widget=DateInput())
    depression = forms.ChoiceField(
        label="Depression measure",
        choices=analytics.DEPRESSION_MEASURES,
        initial=analytics.DEFAULT_DEPRESSION,
        required=False,
    )

    def clean_depression(self):
        return self.cleaned_data["depression"] or analytics.DEFAULT_DEPRESSION

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end and end < start:
            self.add_error("end", "The end date is before the start date.")
        return data


class ReportFilterForm(forms.Form):
    """A program, modality or enrolment date range; read from the query string."""

    program = forms.ModelChoiceField(
        queryset=Program.objects.order_by("name"), required=False, empty_label="All programs"
    )
    modality = forms.ChoiceField(
        choices=[("", "All modalities"), *Program.Modality.choices], required=False
    )
    start = forms.DateField(
        label="Enrolled from", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(
        label="Enrolled until", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end and end < start:
            self.add_error("end", "The end date is before the start date.")
        return data


class SupervisionFilterForm(forms.Form):
    """Clinicians and admins may narrow the page to one program or one coach."""

    program = forms.ModelChoiceField(
        queryset=Program.objects.order_by("name"), required=False, empty_label="All programs"
    )
    coach = forms.ModelChoiceField(queryset=None, required=False, empty_label="All coaches")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["coach"].queryset = coaches()
