from django.conf import settings

from .access import can_edit_patients, can_manage_programs, can_use_analytics, role_of


def clinic(request):
    user = request.user
    return {
        "clinic_name": settings.CLINIC_NAME,
        "crisis_contact": settings.CLINIC_CRISIS_CONTACT,
        "user_role": role_of(user) if user.is_authenticated else None,
        "can_edit_patients": can_edit_patients(user),
        "can_manage_programs": can_manage_programs(user),
        "can_use_analytics": can_use_analytics(user),
    }
