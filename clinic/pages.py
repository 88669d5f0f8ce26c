"""The one form-page pattern every app's create/edit pages share."""

import base64
from io import BytesIO

import qrcode
import qrcode.image.svg
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import redirect, render

from .forms import apply_service_errors


def form_page(request, form, *, save, success, redirect_to, template, context, warning=None):
    """GET shows the form; a valid POST calls `save(cleaned_data)` (a service).

    A service's ValidationError re-shows the form with what was typed and the message next to
    its field; success flashes `success(result)`, then `warning(result)` if that says anything
    (what was saved but still needs someone's attention), and redirects to `redirect_to(result)`.
    """
    if request.method == "POST" and form.is_valid():
        try:
            result = save(form.cleaned_data)
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            messages.success(request, success(result))
            if warning and (text := warning(result)):
                messages.warning(request, text)
            return redirect(redirect_to(result))
    return render(request, template, {"form": form, **context})


PAGE_SIZE = 25


def paginate(request, queryset, per_page: int = PAGE_SIZE):
    """The page `?page=` asks for (the last one if it asks for more, the first for nonsense)."""
    return Paginator(queryset, per_page).get_page(request.GET.get("page"))


def qr_data_uri(text: str) -> str:
    """`text` as a QR code, an SVG in a data: URI (an <img> the CSP allows; no inline SVG)."""
    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage)
    buffer = BytesIO()
    image.save(buffer)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()
