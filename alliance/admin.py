from django.contrib import admin
from django.urls import reverse

from clinic.admin import ReadOnlyInAdmin

from .models import Flag, FlagRule


@admin.register(FlagRule)
class FlagRuleAdmin(ReadOnlyInAdmin, admin.ModelAdmin):
    """Thresholds change on the Thresholds page: audited, and the patients they apply to are
    recomputed."""

    list_display = ["__str__", "weak_bond_below", "srs_below", "updated_at"]
    app_link_text = "Change the thresholds on the Thresholds page"

    def app_url(self, obj) -> str:
        if obj.program_id is None:
            return reverse("flag_rule_default")
        return reverse("flag_rule_program", args=[obj.program_id])


@admin.register(Flag)
class FlagAdmin(admin.ModelAdmin):
    list_display = ["kind", "severity", "patient", "status", "raised_at"]
    list_filter = ["kind", "severity", "status"]
    list_select_related = ["patient"]
    readonly_fields = [f.name for f in Flag._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a flag is resolved, never deleted
