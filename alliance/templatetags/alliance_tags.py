"""Template tags that put alliance settings beside outcomes pages (outcomes cannot import
alliance, so the comparison is made here and loaded by the template)."""

from django import template

from outcomes import scoring
from outcomes.models import Response

from ..flag_inputs import flag_rule_for
from ..models import FlagRule

register = template.Library()


@register.simple_tag
def bond_against_threshold(response: Response) -> dict | None:
    """For a WAI-SR response: its bond mean against the weak-bond threshold that applies to
    the patient (their active program's rule, else the clinic default, else 3.5).

    Returns {"bond" (an outcomes.scoring.PrimaryScore), "threshold", "below", "source"}, or
    None for other questionnaires.
    """
    if response.version.instrument.code != "wai-sr":
        return None
    rule = flag_rule_for(patient=response.patient)
    threshold = (rule or FlagRule()).weak_bond_below
    stored = {score.scale: score for score in response.scores.all()}
    bond = scoring.primary_score(response.version.definition, stored, scale="bond")
    if rule is None:
        source = "default"
    elif rule.program_id is None:
        source = "clinic default"
    else:
        source = "this patient's program"
    return {
        "bond": bond,
        "threshold": threshold,
        "below": bond.value is not None and bond.value < threshold,
        "source": source,
    }
