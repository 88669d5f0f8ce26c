from django.urls import path

from . import setup_views, views

urlpatterns = [
    path("sessions/<uuid:public_id>/log/", views.session_log, name="session_log"),
    path("sessions/<uuid:public_id>/correct/", views.session_correct, name="session_correct"),
    path("sessions/<uuid:public_id>/move/", views.session_reschedule, name="session_reschedule"),
    path("sessions/<uuid:public_id>/cancel/", views.session_cancel, name="session_cancel"),
    path("sessions/<uuid:public_id>/dosing/", views.session_dosing, name="session_dosing"),
    path("sessions/<uuid:public_id>/vitals/", views.session_vitals, name="session_vitals"),
    path(
        "sessions/<uuid:public_id>/adverse-events/new/",
        views.adverse_event_new,
        name="adverse_event_new",
    ),
    path(
        "patients/<uuid:public_id>/adverse-events/new/",
        views.patient_adverse_event_new,
        name="patient_adverse_event_new",
    ),
    path(
        "adverse-events/<uuid:public_id>/edit/",
        views.adverse_event_edit,
        name="adverse_event_edit",
    ),
    path("patients/<uuid:public_id>/sessions/", views.patient_timeline, name="patient_timeline"),
    path(
        "patients/<uuid:public_id>/enrolments/<int:enrolment_id>/book/",
        views.session_book,
        name="session_book",
    ),
    path("calendar/", views.my_calendar, name="my_calendar"),
    path("calendar/link/", views.calendar_feed_create, name="calendar_feed_create"),
    path("calendar/link/revoke/", views.calendar_feed_revoke, name="calendar_feed_revoke"),
    path("calendar/<str:token>.ics", views.calendar_feed, name="calendar_feed"),
    path("programs/", views.program_list, name="program_list"),
    path("rooms/", setup_views.room_list, name="room_list"),
    path("rooms/new/", setup_views.room_create, name="room_create"),
    path("rooms/<int:room_id>/", setup_views.room_edit, name="room_edit"),
]
