from clinic.access import role_of

from . import selectors


def flag_counts(request):
    """Open flags in the navigation, so an urgent one is never more than a glance away."""
    user = request.user
    if not user.is_authenticated or role_of(user) is None:
        return {}
    return {"flag_counts": selectors.flag_counts(user=user)}
