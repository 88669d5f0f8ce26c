from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm
from django.contrib.auth.forms import UserChangeForm as DjangoUserChangeForm
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils.html import format_html
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import services
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
from .roles import Role

# The admin's sign-in counts failures like the main login (one spelling per account).
admin.site.login_form = AdminLoginForm


class NoDeleteMixin:
    """Clinical records are ended or withdrawn, never deleted from the UI."""

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInAdmin(NoDeleteMixin):
    """Records with workflow rules (a schedule, a capacity, a status history, an audit row)
    change only in the app, through its services; the admin shows them and links there."""

    app_link_text = "Change this in the app"

    def app_url(self, obj) -> str:
        return reverse("home")

    @admin.display(description="In the app")
    def in_the_app(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        return format_html('<a href="{}">{}</a>', self.app_url(obj), self.app_link_text)

    def get_readonly_fields(self, request, obj=None):
        return [*(f.name for f in self.model._meta.fields), "in_the_app"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        raise PermissionDenied("Change this record in the app.")


class UserRoleFormMixin(forms.Form):
    """The role is one choice (a Group underneath), saved through the service, audited."""

    role = forms.ChoiceField(choices=[("", "No role"), *Role.choices], required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["role"].initial = _role_value(self.instance)

    def clean(self):
        """The services' refusals, shown on the form instead of failing on save."""
        cleaned = super().clean()
        actor = getattr(self, "actor", None)
        email = (cleaned.get("email") or "").strip().lower()
        others = User.objects.exclude(pk=self.instance.pk) if self.instance.pk else User.objects
        if email and others.filter(email__iexact=email).exists():
            self.add_error("email", "Another account already uses this e-mail address.")
        if actor is not None and self.instance.pk == actor.pk:
            if cleaned.get("role") != Role.ADMIN:
                self.add_error("role", "You cannot take away your own admin role.")
            if cleaned.get("is_active") is False:
                self.add_error("is_active", "You cannot deactivate your own account.")
        return cleaned


class UserChangeForm(UserRoleFormMixin, DjangoUserChangeForm):
    pass


class UserCreationForm(UserRoleFormMixin, AdminUserCreationForm):
    pass


def _role_value(user) -> str:
    return user.role.value if user.role else ""


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Staff accounts. Every change goes through clinic.services (audited): the role is one
    choice; nobody becomes a superuser here; groups and permissions are not edited here; a
    superuser's account is changed only by a superuser; a lost authenticator is reset, never
    shown."""

    form = UserChangeForm
    add_form = UserCreationForm
    ordering = ["display_name"]
    list_display = ["display_name", "email", "is_active", "is_staff", "last_login"]
    list_filter = ["groups", "is_active", "is_staff"]
    search_fields = ["display_name", "email"]
    fieldsets = [
        (None, {"fields": ["email", "display_name", "password"]}),
        ("Role and access", {"fields": ["role", "is_active", "is_staff", "is_superuser"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [
        (
            None,
            {
                "classes": ["wide"],
                "fields": ["email", "display_name", "role", "password1", "password2"],
            },
        )
    ]
    readonly_fields = ["is_staff", "is_superuser", "last_login", "date_joined"]
    filter_horizontal = []
    actions = ["reset_second_factor"]

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.actor = request.user  # a class made for this request: the form's checks need it
        return form

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False  # deactivate instead: audit rows point at users

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            # The form wrote its values onto `obj`; the service compares with the stored row.
            changes = {
                name: data[name]
                for name in services.USER_EDITABLE_FIELDS
                if name in form.changed_data
            }
            services.user_update(actor=request.user, user=obj, **changes)
            if "role" in form.changed_data:
                services.user_change_role(actor=request.user, user=obj, role=data["role"])
        else:
            created = services.user_create(
                actor=request.user,
                email=data["email"],
                display_name=data["display_name"],
                password=data.get("password1") or None,
                role=data.get("role", ""),
            )
            obj.pk = created.pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        pass  # no groups or permissions are edited here; the role went through the service

    @admin.action(description="Reset second factor (they set up a new one at next sign-in)")
    def reset_second_factor(self, request, queryset):
        for user in queryset:
            try:
                services.user_reset_second_factor(actor=request.user, user=user)
            except PermissionDenied as exc:
                self.message_user(request, f"{user}: {exc}", level=messages.ERROR)
            else:
                self.message_user(request, f"{user} will set up a new authenticator.")


@admin.register(Patient)
class PatientAdmin(ReadOnlyInAdmin, admin.ModelAdmin):
    list_display = ["record_number", "last_name", "first_name", "status", "created_at"]
    list_filter = ["status"]
    search_fields = ["record_number", "last_name", "first_name"]
    app_link_text = "Open the patient page (edit, status, enrolment, coaches)"

    def app_url(self, obj) -> str:
        return reverse("patient_detail", args=[obj.public_id])

    def change_view(self, request, object_id, form_url="", extra_context=None):
        patient = self.get_object(request, object_id)
        if patient is not None and self.has_view_permission(request, patient):
            services.record_patient_view(actor=request.user, patient=patient)
        return super().change_view(request, object_id, form_url, extra_context)


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

    def save_model(self, request, obj, form, change):
        services.program_save(actor=request.user, program=obj)


class ReadOnlyInline(admin.TabularInline):
    """Rows shown under their parent in the Django admin and changed only on the app's pages,
    through the services."""

    extra = 0

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class CoachAssignmentInline(ReadOnlyInline):
    model = CoachAssignment
    fields = ["coach", "role", "start_date", "end_date", "assigned_by"]
    readonly_fields = fields


def _patient_page(enrolment: Enrolment) -> str:
    return reverse("patient_detail", args=[enrolment.patient.public_id])


@admin.register(Enrolment)
class EnrolmentAdmin(ReadOnlyInAdmin, admin.ModelAdmin):
    list_display = ["patient", "program", "status", "start_date", "end_date"]
    list_filter = ["status", "program"]
    list_select_related = ["patient", "program"]
    search_fields = ["patient__record_number", "patient__last_name", "program__name"]
    inlines = [CoachAssignmentInline]
    app_link_text = "Enrol, assign coaches or end an assignment on the patient page"

    def app_url(self, obj) -> str:
        return _patient_page(obj)


@admin.register(CoachAssignment)
class CoachAssignmentAdmin(ReadOnlyInAdmin, admin.ModelAdmin):
    list_display = ["coach", "role", "enrolment", "start_date", "end_date"]
    list_filter = ["role"]
    list_select_related = ["coach", "enrolment__patient", "enrolment__program"]
    app_link_text = "Assign, reassign or end on the patient page"

    def app_url(self, obj) -> str:
        return _patient_page(obj.enrolment)


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


# django_otp's own admin shows a device's secret key and a QR code of it. Ours lists devices
# and nothing that could rebuild a code; a lost device is reset from the user list.
admin.site.unregister(TOTPDevice)


@admin.register(TOTPDevice)
class TOTPDeviceAdmin(admin.ModelAdmin):
    list_display = ["user", "name", "confirmed", "created_at", "last_used_at"]
    list_filter = ["confirmed"]
    list_select_related = ["user"]
    search_fields = ["user__email", "user__display_name"]
    fields = ["user", "name", "confirmed", "created_at", "last_used_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
