from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from .forms import AdminLoginForm
from .models import (
    AuditEvent,
    CoachAssignment,
    Enrolment,
    Patient,
    PatientStatusChange,
    Program,
    User,
    WorkerHeartbeat,
)

# The admin's sign-in counts failures like the main login (one spelling per account).
admin.site.login_form = AdminLoginForm


class NoDeleteMixin:
    """Clinical records are ended or withdrawn, never deleted from the UI."""

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["display_name"]
    list_display = ["display_name", "email", "is_active", "is_staff", "last_login"]
    list_filter = ["groups", "is_active", "is_staff"]
    search_fields = ["display_name", "email"]
    fieldsets = [
        (None, {"fields": ["email", "display_name", "password"]}),
        ("Role and access", {"fields": ["is_active", "is_staff", "is_superuser", "groups"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [
        (
            None,
            {
                "classes": ["wide"],
                "fields": ["email", "display_name", "groups", "password1", "password2"],
            },
        )
    ]
    filter_horizontal = ["groups"]

    def has_delete_permission(self, request, obj=None):
        return False  # deactivate instead: audit rows point at users


@admin.register(Patient)
class PatientAdmin(NoDeleteMixin, admin.ModelAdmin):
    list_display = ["record_number", "last_name", "first_name", "status", "created_at"]
    list_filter = ["status"]
    search_fields = ["record_number", "last_name", "first_name"]
    readonly_fields = ["public_id", "created_at", "updated_at"]


@admin.register(PatientStatusChange)
class PatientStatusChangeAdmin(NoDeleteMixin, admin.ModelAdmin):
    list_display = ["patient", "from_status", "to_status", "changed_by", "changed_at"]
    list_select_related = ["patient", "changed_by"]
    readonly_fields = [f.name for f in PatientStatusChange._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Program)
class ProgramAdmin(NoDeleteMixin, admin.ModelAdmin):
    list_display = ["name", "kind", "modality", "capacity", "start_date", "is_active"]
    list_filter = ["kind", "modality", "is_active"]
    search_fields = ["name"]


class CoachAssignmentInline(admin.TabularInline):
    model = CoachAssignment
    extra = 0
    fields = ["coach", "role", "start_date", "end_date", "assigned_by"]
    autocomplete_fields = ["coach"]
    readonly_fields = ["assigned_by"]

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Enrolment)
class EnrolmentAdmin(NoDeleteMixin, admin.ModelAdmin):
    list_display = ["patient", "program", "status", "start_date", "end_date"]
    list_filter = ["status", "program"]
    list_select_related = ["patient", "program"]
    search_fields = ["patient__record_number", "patient__last_name", "program__name"]
    autocomplete_fields = ["patient", "program"]
    readonly_fields = ["enrolled_by"]
    inlines = [CoachAssignmentInline]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.enrolled_by = request.user
        super().save_model(request, obj, form, change)

    def save_formset(self, request, form, formset, change):
        for assignment in formset.save(commit=False):
            if not assignment.assigned_by_id:
                assignment.assigned_by = request.user
            assignment.save()
        formset.save_m2m()


@admin.register(CoachAssignment)
class CoachAssignmentAdmin(NoDeleteMixin, admin.ModelAdmin):
    list_display = ["coach", "role", "enrolment", "start_date", "end_date"]
    list_filter = ["role"]
    list_select_related = ["coach", "enrolment__patient", "enrolment__program"]
    autocomplete_fields = ["coach", "enrolment"]
    readonly_fields = ["assigned_by"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.assigned_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Admins read the audit log; nobody adds, edits or deletes it from the UI."""

    list_display = ["at", "actor", "action", "object_type", "object_id", "patient"]
    list_filter = ["action", "object_type"]
    list_select_related = ["actor", "patient"]
    search_fields = ["object_id", "actor__email", "patient__record_number"]
    date_hierarchy = "at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ["hostname", "seen_at"]

    def has_add_permission(self, request):
        return False
