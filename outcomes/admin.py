from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from .models import Instrument, InstrumentVersion, ItemWording, Response, SelfReportLink


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "respondent"]


class ItemWordingInline(admin.TabularInline):
    model = ItemWording
    extra = 0


@admin.register(InstrumentVersion)
class InstrumentVersionAdmin(admin.ModelAdmin):
    list_display = ["instrument", "version", "loaded_at"]
    readonly_fields = ["instrument", "version", "definition", "content_hash", "loaded_at"]
    inlines = [ItemWordingInline]

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Response)
class ResponseAdmin(SimpleHistoryAdmin):
    list_display = ["version", "patient", "source", "administered_at", "has_safety_hit"]
    list_filter = ["version__instrument", "source", "has_safety_hit"]
    list_select_related = ["version__instrument", "patient"]
    readonly_fields = [f.name for f in Response._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # corrections go through the app, which rescores and records a reason

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(SelfReportLink)
class SelfReportLinkAdmin(admin.ModelAdmin):
    """Read-only: who was sent what, and whether it was answered. Token hashes stay hidden."""

    list_display = ["patient", "created_at", "expires_at", "used_at", "by_email", "reminders_sent"]
    list_filter = ["by_email", "used_at"]
    list_select_related = ["patient"]
    exclude = ["token_hash", "earlier_token_hashes"]
    readonly_fields = [
        f.name
        for f in SelfReportLink._meta.fields
        if f.name not in ("token_hash", "earlier_token_hashes")
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
