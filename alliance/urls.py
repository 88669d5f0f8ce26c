from django.urls import path

from . import pages, views

urlpatterns = [
    # The pages that compose every app (alliance.pages).
    path("", pages.home, name="home"),
    path("patients/<uuid:public_id>/", pages.patient_detail, name="patient_detail"),
    path("sessions/<uuid:public_id>/", pages.session_detail, name="session_detail"),
    path("programs/<int:program_id>/sessions/", pages.program_sessions, name="program_sessions"),
    path("flags/", views.flag_worklist, name="flag_worklist"),
    path("flags/<uuid:public_id>/", views.flag_detail, name="flag_detail"),
    path("flags/<uuid:public_id>/acknowledge/", views.flag_acknowledge, name="flag_acknowledge"),
    path("flags/<uuid:public_id>/resolve/", views.flag_resolve, name="flag_resolve"),
    path("patients/<uuid:public_id>/flags/", views.patient_flags, name="patient_flags"),
    path(
        "patients/<uuid:public_id>/dashboard/",
        views.patient_dashboard,
        name="patient_dashboard",
    ),
    path("sessions/<uuid:public_id>/discharge/", views.session_discharge, name="session_discharge"),
    path(
        "sessions/<uuid:public_id>/monitoring/",
        views.session_monitoring_summary,
        name="session_monitoring_summary",
    ),
    path("sessions/<uuid:public_id>/ready/", views.dosing_ready, name="session_ready"),
    path("thresholds/", views.flag_rule_edit, name="flag_rule_default"),
    path("exports/", views.export, name="export"),
    path(
        "exports/fhir/<uuid:export_id>/",
        views.fhir_export_download,
        name="fhir_export_download",
    ),
    path("analytics/", views.cohort_analytics, name="cohort_analytics"),
    path("analytics/scatter/", views.cohort_scatter, name="cohort_scatter"),
    path("reports/program/", views.program_report, name="program_report"),
    path("supervision/", views.supervision_page, name="supervision"),
    path("thresholds/<int:program_id>/", views.flag_rule_edit, name="flag_rule_program"),
]
