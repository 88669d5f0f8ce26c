from django.contrib import admin
from django.urls import reverse

from clinic.admin import ReadOnlyInAdmin

from .models import Attendance, CalendarFeed, Protocol, ProtocolStep, Room, Session


class ProtocolStepInline(admin.TabularInline):
    model = ProtocolStep
    extra = 0
    fields = [
        "order",
        "kind",
        "label",
        "anchor",
        "day_offset",
        "start_time",
        "duration_minutes",
        "is_group",
        "instruments_due",
    ]


@admin.register(Protocol)
class ProtocolAdmin(admin.ModelAdmin):
    list_display = ["name", "modality", "min_preparation_before_dosing", "is_active"]
    inlines = [ProtocolStepInline]

    def has_delete_permission(self, request, obj=None):
        return False  # switch off with is_active; programs and sessions point at protocols


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active"]


class AttendanceInline(admin.TabularInline):
    model = Attendance
    extra = 0
    fields = ["patient", "enrolment", "status"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Session)
class SessionAdmin(ReadOnlyInAdmin, admin.ModelAdmin):
    list_display = ["__str__", "kind", "program", "status", "scheduled_start", "is_group"]
    list_filter = ["kind", "status", "is_group", "program"]
    date_hierarchy = "scheduled_start"
    list_select_related = ["program"]
    inlines = [AttendanceInline]
    app_link_text = "Book, move, cancel, log or correct it on the session page"

    def app_url(self, obj) -> str:
        return reverse("session_detail", args=[obj.public_id])


@admin.register(CalendarFeed)
class CalendarFeedAdmin(admin.ModelAdmin):
    list_display = ["coach", "created_at", "revoked_at"]
    readonly_fields = ["coach", "token_hash", "created_at"]

    def has_add_permission(self, request):
        return False
