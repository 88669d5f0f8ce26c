from django.urls import path

from . import protocol_views, views

urlpatterns = [
    path(
        "patients/<uuid:public_id>/questionnaires/<slug:code>/",
        views.response_new,
        name="response_new",
    ),
    path("responses/<uuid:public_id>/", views.response_detail, name="response_detail"),
    path("responses/<uuid:public_id>/correct/", views.response_correct, name="response_correct"),
    path("patients/<uuid:public_id>/links/new/", views.link_new, name="link_new"),
    path("sessions/<uuid:public_id>/kiosk/", views.kiosk_start, name="kiosk_start"),
    path("kiosk/", views.kiosk_answer, name="kiosk_answer"),
    path("kiosk/hand-back/", views.kiosk_hand_back, name="kiosk_hand_back"),
    path("kiosk/locked/", views.kiosk_locked, name="kiosk_locked"),
    # The token-free page first: a link's token is exchanged for a session entry on /q/<token>/.
    path("q/answer/", views.link_answer, name="link_answer"),
    path("q/<str:token>/", views.link_open, name="link_open"),
    path("protocols/", protocol_views.protocol_list, name="protocol_list"),
    path("protocols/new/", protocol_views.protocol_create, name="protocol_create"),
    path("protocols/<int:protocol_id>/", protocol_views.protocol_edit, name="protocol_edit"),
    path(
        "protocols/<int:protocol_id>/steps/new/",
        protocol_views.protocol_step_create,
        name="protocol_step_create",
    ),
    path(
        "protocols/<int:protocol_id>/steps/<int:step_id>/",
        protocol_views.protocol_step_edit,
        name="protocol_step_edit",
    ),
]
