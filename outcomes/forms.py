import re
import uuid
from decimal import Decimal

from crispy_forms.bootstrap import InlineRadios
from crispy_forms.helper import FormHelper
from crispy_forms.layout import HTML, Fieldset, Layout, Submit
from django import forms
from django.utils import timezone
from django.utils.html import format_html

from clinic.models import Program
from sessions.forms import DateTimeInput, TimeInput
from sessions.models import ProtocolStep, SessionKind

# The question each questionnaire's items answer, in our own words (the definition files hold
# only item labels; licensed wording for the items themselves is imported per version).
PROMPTS = {
    "wai-sr": "Think about your work with your coach (or the care team). How often is each of "
    "these true?",
    "srs": "Rate today's session: give each line a number from 0 to 10, where 10 means it "
    "suited you completely.",
    "phq-9": "Over the last two weeks, how often have you been bothered by each of these?",
    "gad-7": "Over the last two weeks, how often have you been bothered by each of these?",
    "qids-sr-16": "Thinking of the last seven days, choose the answer that fits you best.",
    "meq-30": "Looking back on your dosing session, how much did you experience each of these?",
    "piq": "Looking back on your dosing session, how much did you gain each of these insights?",
    "ebi": "Looking back on your dosing session, rate each from 0 (not more than usual) to 100 "
    "(much more than usual).",
    "grid-hamd-17": "Rate each item from the interview, for the past week.",
}


# What the patient sees above each questionnaire: what it is about, in plain words. Staff pages
# keep the instrument's full name; a patient has no use for "(version 3)" or "(16 items)".
PATIENT_TITLES = {
    "wai-sr": "Working with your care team",
    "srs": "About today's session",
    "phq-9": "How you have been feeling",
    "gad-7": "Worry and anxiety",
    "qids-sr-16": "Your mood, sleep and energy",
    "meq-30": "Your experience during the dosing session",
    "piq": "Insights from your dosing session",
    "ebi": "Emotions during your dosing session",
}


def patient_title(definition: dict) -> str:
    """The patient-facing title; an instrument without one shows its name without the
    bracketed version or item count."""
    if title := PATIENT_TITLES.get(definition["code"]):
        return title
    return re.sub(r"\s*\([^)]*\)\s*$", "", definition["name"])


def prompt_for(definition: dict) -> HTML | None:
    text = PROMPTS.get(definition["code"])
    return HTML(format_html('<p class="questionnaire-prompt">{}</p>', text)) if text else None


def _steps(scale: dict) -> list[Decimal]:
    low, high, step = (Decimal(str(scale[k])) for k in ("min", "max", "step"))
    values, value = [], low
    while value <= high:
        values.append(value)
        value += step
    return values


def _item_field(definition: dict, item: dict, wording: dict[int, str]) -> forms.Field:
    scale = {**definition["scale"], **item.get("scale", {})}
    label = f"{item['number']}. {wording.get(item['number'], item['label'])}"
    if scale["kind"] == "vas":
        return forms.DecimalField(
            label=label,
            required=False,
            min_value=Decimal(str(scale["min"])),
            max_value=Decimal(str(scale["max"])),
            decimal_places=1,
            help_text=" · ".join(f"{k} = {v}" for k, v in scale.get("labels", {}).items()),
            widget=forms.NumberInput(
                attrs={
                    "step": scale["step"],
                    "min": scale["min"],
                    "max": scale["max"],
                    "data-vas": "true",
                    "inputmode": "decimal",
                }
            ),
        )
    labels = scale.get("labels", {})
    choices = [
        (str(v.normalize()), f"{v.normalize()} {labels.get(str(v.normalize()), '')}".strip())
        for v in _steps(scale)
    ]
    return forms.TypedChoiceField(
        label=label,
        choices=choices,
        coerce=Decimal,
        required=False,
        empty_value=None,
        widget=forms.RadioSelect,
    )


class ItemsForm(forms.Form):
    """The items of one questionnaire, built from its definition (radio groups, or a typed
    number with a slider for visual-analogue items)."""

    def __init__(self, *args, definition: dict, wording=None, stacked=False, title=None, **kwargs):
        """`stacked` puts each answer on its own line (phones); otherwise answers sit side by
        side (staff entry on a desktop or tablet). `title` replaces the instrument's name
        above the items (the patient's own page)."""
        super().__init__(*args, **kwargs)
        self.definition = definition
        self.item_layout = []
        for item in definition["items"]:
            name = f"item_{item['number']}"
            self.fields[name] = _item_field(definition, item, wording or {})
            is_choice = {**definition["scale"], **item.get("scale", {})}["kind"] == "choice"
            self.item_layout.append(InlineRadios(name) if is_choice and not stacked else name)
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.disable_csrf = True  # the templates put {% csrf_token %} in the form
        self.prompt = [prompt] if (prompt := prompt_for(definition)) else []
        self.helper.layout = Layout(
            Fieldset(title or definition["name"], *self.prompt, *self.item_layout)
        )

    def answers(self) -> dict[int, Decimal | None]:
        return {
            item["number"]: self.cleaned_data.get(f"item_{item['number']}")
            for item in self.definition["items"]
        }


class ResponseForm(ItemsForm):
    """Staff entry: the items plus when it was answered, about whom, and a one-time key."""

    administered_at = forms.DateTimeField(
        label="Answered at", widget=DateTimeInput(), initial=timezone.localtime
    )
    submission_key = forms.UUIDField(widget=forms.HiddenInput, initial=uuid.uuid4)
    allow_incomplete = forms.BooleanField(
        required=False,
        label="Save incomplete: keep the answers even if too few items are answered for a total",
    )

    def __init__(self, *args, definition: dict, wording=None, coaches=None, **kwargs):
        super().__init__(*args, definition=definition, wording=wording, **kwargs)
        if coaches is not None:
            self.fields["about_coach"] = forms.ModelChoiceField(
                queryset=coaches,
                required=False,
                label="Rating about",
                empty_label="The care team",
            )
        self.helper.layout = Layout(
            HTML(
                '<p class="text-body-secondary small">Every item can be answered with the '
                "keyboard: Tab moves between items, arrow keys choose an answer.</p>"
            ),
            "administered_at",
            *(["about_coach"] if coaches is not None else []),
            Fieldset(definition["name"], *self.prompt, *self.item_layout),
            "allow_incomplete",
            "submission_key",
        )
        self.helper.add_input(Submit("save", "Save answers"))


class LinkForm(forms.Form):
    instruments = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple, label="Questionnaires to answer"
    )
    hours = forms.IntegerField(
        label="Link valid for (hours)",
        min_value=1,
        max_value=24 * 14,
        required=False,
        help_text="Leave empty: with reminders, until a day after the last one (4 days); "
        "without, 72 hours. A shorter life spaces the reminders to fit.",
    )
    reminders = forms.BooleanField(
        label="E-mail the patient reminders (three, a day apart) until answered",
        required=False,
        initial=True,
        help_text="Only to patients who agreed to questionnaires by e-mail.",
    )

    send_by_email = forms.BooleanField(required=False)

    def __init__(self, *args, choices, email_to: str = "", **kwargs):
        """`email_to`: the patient's address when they agreed to e-mail; otherwise the link
        can only be copied or scanned, and the form does not offer e-mail."""
        super().__init__(*args, **kwargs)
        self.fields["instruments"].choices = choices
        if email_to:
            self.fields["send_by_email"].label = f"Also e-mail it to them now ({email_to})"
        else:
            del self.fields["send_by_email"]
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.disable_csrf = True
        self.helper.add_input(Submit("create", "Create link"))


class CorrectionForm(ItemsForm):
    administered_at = forms.DateTimeField(label="Answered at", widget=DateTimeInput())
    reason = forms.CharField(
        label="Why are the answers being corrected?",
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper.layout = Layout(
            "administered_at",
            Fieldset(self.definition["name"], *self.prompt, *self.item_layout),
            "reason",
        )
        self.helper.add_input(Submit("save", "Save correction"))


class KioskStartForm(forms.Form):
    """Which patient of the session gets the tablet (a group session has several)."""

    patient = forms.ChoiceField(widget=forms.RadioSelect, label="Hand the tablet to")

    def __init__(self, *args, choices, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["patient"].choices = choices
        if len(choices) == 1:
            self.fields["patient"].initial = choices[0][0]
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.disable_csrf = True
        self.helper.add_input(Submit("start", "Start the kiosk and sign me out here"))


class KioskUnlockForm(forms.Form):
    code = forms.CharField(
        label="Coach's unlock code",
        max_length=12,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.disable_csrf = True
        self.helper.add_input(Submit("unlock", "Unlock", css_class="btn-lg"))


class ProtocolForm(forms.Form):
    """A protocol's own settings; its steps are edited one at a time."""

    name = forms.CharField(max_length=200)
    modality = forms.ChoiceField(choices=Program.Modality.choices)
    min_preparation_before_dosing = forms.IntegerField(
        label="Preparation sessions expected before a dosing",
        min_value=0,
        max_value=20,
        initial=2,
        help_text="A dosing with fewer completed preparations shows a warning.",
    )
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    is_active = forms.BooleanField(label="Offered for new programs", required=False, initial=True)
    measurement_schedule = forms.JSONField(
        label="Measurement schedule (follow-ups by date)",
        required=False,
        initial=list,
        widget=forms.Textarea(attrs={"rows": 8, "class": "font-monospace"}),
        help_text="A list of time points from an anchor (enrolment, first or last dosing) "
        "with a window, or recurring measures; see sessions/schedules.py. Empty: none.",
    )

    def __init__(self, *args, submit_label="Save protocol", **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _protocol_helper(submit_label)


class ProtocolStepForm(forms.Form):
    """One step: when it falls, how long it lasts, and the questionnaires due after it."""

    order = forms.IntegerField(label="Step number", min_value=1, max_value=200)
    kind = forms.ChoiceField(choices=SessionKind.choices)
    label = forms.CharField(max_length=80, help_text="What staff see, e.g. Preparation 2.")
    anchor = forms.ChoiceField(label="Counted from", choices=ProtocolStep.Anchor.choices)
    day_offset = forms.IntegerField(label="Days", min_value=0, max_value=3650)
    start_time = forms.TimeField(label="Suggested start (clinic time)", widget=TimeInput())
    duration_minutes = forms.IntegerField(label="Duration (minutes)", min_value=1, max_value=1440)
    is_group = forms.BooleanField(
        label="One session shared by everyone in a group program", required=False
    )
    instruments_due = forms.MultipleChoiceField(
        label="Questionnaires due after this step",
        choices=[],
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )

    def __init__(self, *args, instruments, kept_order=(), submit_label="Save step", **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["instruments_due"].choices = [
            (instrument.code, f"{instrument.short_name}: {instrument.name}")
            for instrument in instruments
        ]
        self._kept_order = list(kept_order)
        self.helper = _protocol_helper(submit_label)

    def clean_instruments_due(self):
        """Codes the step already had keep their place (the order staff are asked in); new
        ones follow in the order of the list."""
        chosen = self.cleaned_data["instruments_due"]
        kept = [code for code in self._kept_order if code in chosen]
        return kept + [code for code in chosen if code not in kept]


def _protocol_helper(label: str) -> FormHelper:
    helper = FormHelper()
    helper.form_tag = False
    helper.add_input(Submit("submit", label))
    return helper
