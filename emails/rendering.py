"""`{{ name }}` placeholders in templates the marketer writes: no template language, nothing to inject."""

from __future__ import annotations

import re
from collections.abc import Mapping

from django.utils.html import escape

PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")


def render_text(template: str, values: Mapping[str, object]) -> str:
    return PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), template)


def render_html(template: str, values: Mapping[str, object]) -> str:
    return PLACEHOLDER.sub(lambda m: escape(str(values[m.group(1)])) if m.group(1) in values else m.group(0), template)
