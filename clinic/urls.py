from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import staff_views, views
from .forms import LoginForm

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon),
    path("patients/", views.patient_list, name="patient_list"),
    path("patients/new/", views.patient_create, name="patient_create"),
    path("patients/<uuid:public_id>/edit/", views.patient_edit, name="patient_edit"),
    path("patients/<uuid:public_id>/audit/", views.patient_audit, name="patient_audit"),
    path("patients/<uuid:public_id>/status/", views.patient_status, name="patient_status"),
    path("patients/<uuid:public_id>/enrol/", views.patient_enrol, name="patient_enrol"),
    path(
        "patients/<uuid:public_id>/enrolments/<int:enrolment_id>/assign/",
        views.assignment_create,
        name="assignment_create",
    ),
    path(
        "patients/<uuid:public_id>/assignments/<int:assignment_id>/reassign/",
        views.assignment_reassign,
        name="assignment_reassign",
    ),
    path(
        "patients/<uuid:public_id>/assignments/<int:assignment_id>/end/",
        views.assignment_end,
        name="assignment_end",
    ),
    path("account/two-factor/", views.two_factor_setup, name="two_factor_setup"),
    path("account/two-factor/verify/", views.two_factor_verify, name="two_factor_verify"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(
            authentication_form=LoginForm, redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password/",
        auth_views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("staff/", staff_views.staff_list, name="staff_list"),
    path("staff/invite/", staff_views.staff_invite, name="staff_invite"),
    path("staff/<int:user_id>/", staff_views.staff_edit, name="staff_edit"),
    path("staff/<int:user_id>/active/", staff_views.staff_active, name="staff_active"),
    path(
        "staff/<int:user_id>/second-factor/",
        staff_views.staff_reset_second_factor,
        name="staff_second_factor",
    ),
    path("programs/new/", staff_views.program_create, name="program_create"),
    path(
        "accounts/set-password/<uidb64>/<token>/",
        staff_views.SetPasswordView.as_view(),
        name="password_set",
    ),
    path("admin/", admin.site.urls),
    path("", include("sessions.urls")),
    path("", include("outcomes.urls")),
    path("", include("alliance.urls")),
]
