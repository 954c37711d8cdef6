"""Template filters for the admin's own templates."""

from django import template
from django.template.defaultfilters import capfirst
from django.utils.functional import Promise

register = template.Library()


@register.filter
def label_capfirst(value):
    """capfirst for the admin's own labels (an app's or a model's verbose name); an object is shown as its name
    reads. The header's path capitalised every part, so a profile named by its email read 'Ann@example.com' and a
    segment called 'iPhone users' 'IPhone users' (Django's own admin leaves the object's name alone)."""
    if isinstance(value, str | Promise):
        return capfirst(value)
    return value
