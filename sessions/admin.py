from django.contrib import admin
from django.urls import reverse

from clinic.admin import ReadOnlyInAdmin, ReadOnlyInline

from . import services
from .models import Attendance, CalendarFeed, Protocol, ProtocolStep, Room, Session, VitalLimits
from .selectors import VITAL_LIMIT_FIELDS


class ProtocolStepInline(ReadOnlyInline):
    model = ProtocolStep
    fields = [*services.STEP_FIELDS, "monitoring"]
    readonly_fields = fields


@admin.register(Protocol)
class ProtocolAdmin(ReadOnlyInAdmin, admin.ModelAdmin):
    list_display = ["name", "modality", "min_preparation_before_dosing", "is_active"]
    inlines = [ProtocolStepInline]
    app_link_text = "Edit the protocol and its steps in the app (Programs → Protocols)"

    def app_url(self, obj) -> str:
        return reverse("protocol_edit", args=[obj.pk])


@admin.register(Room)
class RoomAdmin(ReadOnlyInAdmin, admin.ModelAdmin):
    list_display = ["name", "is_active"]
    app_link_text = "Rename it or take it out of use in the app (Programs → Rooms)"

    def app_url(self, obj) -> str:
        return reverse("room_edit", args=[obj.pk])


class AttendanceInline(ReadOnlyInline):
    model = Attendance
    fields = ["patient", "enrolment", "status"]
    readonly_fields = fields


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


@admin.register(VitalLimits)
class VitalLimitsAdmin(admin.ModelAdmin):
    """A program's vital-sign alert thresholds; saved through the service (validated,
    audited). Without a row the program's modality defaults apply (with their source)."""

    list_display = [
        "program",
        "pre_dose_systolic_above",
        "pre_dose_diastolic_above",
        "systolic_above",
        "diastolic_above",
        "spo2_below",
    ]
    readonly_fields = ["updated_at", "updated_by"]

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        services.vital_limits_update(
            actor=request.user,
            program=data["program"],
            source=data["source"],
            **{name: data[name] for name in VITAL_LIMIT_FIELDS},
        )

    def has_delete_permission(self, request, obj=None):
        return False
