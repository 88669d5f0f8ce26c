import uuid
from decimal import Decimal

from crispy_forms.bootstrap import InlineRadios
from crispy_forms.helper import FormHelper
from crispy_forms.layout import HTML, Fieldset, Layout, Submit
from django import forms
from django.utils import timezone

from sessions.forms import DateTimeInput


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

    def __init__(self, *args, definition: dict, wording=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.definition = definition
        self.item_layout = []
        for item in definition["items"]:
            name = f"item_{item['number']}"
            self.fields[name] = _item_field(definition, item, wording or {})
            is_choice = definition["scale"]["kind"] == "choice" and "scale" not in item
            self.item_layout.append(InlineRadios(name) if is_choice else name)
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.disable_csrf = True
        self.helper.layout = Layout(Fieldset(definition["name"], *self.item_layout))

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
            Fieldset(definition["name"], *self.item_layout),
            "allow_incomplete",
            "submission_key",
        )
        self.helper.disable_csrf = False
        self.helper.add_input(Submit("save", "Save answers"))


class LinkForm(forms.Form):
    instruments = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple, label="Questionnaires to answer"
    )
    hours = forms.IntegerField(
        label="Link valid for (hours)", min_value=1, max_value=24 * 14, initial=72
    )

    def __init__(self, *args, choices, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["instruments"].choices = choices
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.add_input(Submit("create", "Create link"))


class CorrectionForm(ItemsForm):
    reason = forms.CharField(
        label="Why are the answers being corrected?",
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper.layout = Layout(Fieldset(self.definition["name"], *self.item_layout), "reason")
        self.helper.disable_csrf = False
        self.helper.add_input(Submit("save", "Save correction"))
