from django.contrib import admin

from .models import Flag, FlagRule


@admin.register(FlagRule)
class FlagRuleAdmin(admin.ModelAdmin):
    list_display = ["__str__", "weak_bond_below", "srs_below", "updated_at"]
    readonly_fields = ["updated_by", "updated_at"]

    def has_delete_permission(self, request, obj=None):
        return False


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
