from django.contrib import admin

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
    readonly_fields = ["patient", "enrolment"]

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "kind", "program", "status", "scheduled_start", "is_group"]
    list_filter = ["kind", "status", "is_group", "program"]
    date_hierarchy = "scheduled_start"
    list_select_related = ["program"]
    # Times, rooms and status change in the app, which checks for double-booking.
    readonly_fields = [
        "public_id",
        "scheduled_start",
        "scheduled_end",
        "room",
        "status",
        "logged_by",
        "logged_at",
        "created_at",
    ]
    filter_horizontal = ["facilitators"]
    inlines = [AttendanceInline]

    def has_add_permission(self, request):
        return False  # book from the patient's sessions page

    def has_delete_permission(self, request, obj=None):
        return False  # cancel instead: sessions are part of the clinical record


@admin.register(CalendarFeed)
class CalendarFeedAdmin(admin.ModelAdmin):
    list_display = ["coach", "created_at", "revoked_at"]
    readonly_fields = ["coach", "token_hash", "created_at"]

    def has_add_permission(self, request):
        return False
