from django.urls import path

from . import views

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
]
