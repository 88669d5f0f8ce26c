import uuid
from decimal import Decimal

from crispy_forms.bootstrap import InlineRadios
from crispy_forms.helper import FormHelper
from crispy_forms.layout import HTML, Fieldset, Layout, Submit
from django import forms
from django.utils import timezone
from django.utils.html import format_html

from sessions.forms import DateTimeInput

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

    def __init__(self, *args, definition: dict, wording=None, stacked=False, **kwargs):
        """`stacked` puts each answer on its own line (phones); otherwise answers sit side by
        side (staff entry on a desktop or tablet)."""
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
        self.helper.layout = Layout(Fieldset(definition["name"], *self.prompt, *self.item_layout))

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

    def __init__(self, *args, choices, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["instruments"].choices = choices
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
