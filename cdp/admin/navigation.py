"""The Business Explorer's sidebar (settings.UNFOLD["SIDEBAR"]["navigation"] names `sidebar_navigation`).

Each link shows only when the model admin behind it lets the user view it, so the sidebar and the pages agree.
Registered models missing from GROUPS still appear, under "More", so a new admin page is never unreachable.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse

# (group title, [(app_label.model_name, title, material symbol icon), ...])
GROUPS: list[tuple[str, list[tuple[str, str, str]]]] = [
    (
        "Customers",
        [
            ("cdp.customerentity", "Customer profiles", "person"),
            ("cdp.customerevent", "Customer events", "bolt"),
        ],
    ),
    (
        "Data",
        [
            ("cdp.datasource", "Data sources", "input"),
            ("cdp.attribute", "Attributes", "label"),
        ],
    ),
    (
        "Segments",
        [
            ("segments.segment", "Segments", "groups"),
            ("segments.tag", "Tags", "sell"),
        ],
    ),
    (
        "Identity stitching",
        [
            ("stitching.stitchingcategory", "Stitching categories", "category"),
            ("stitching.stitchingrule", "Stitching rules", "rule"),
            ("stitching.blockedvalue", "Blocked values", "block"),
            ("stitching.refusedlink", "Refused links", "link_off"),
            ("stitching.hubreview", "Hub reviews", "hub"),
            ("stitching.entitychange", "Merge history", "merge"),
        ],
    ),
    (
        "Email",
        [
            ("emails.campaign", "Campaigns", "campaign"),
            ("emails.emailtemplate", "Email templates", "mail"),
            ("emails.emailaddress", "Email addresses", "alternate_email"),
            ("emails.job", "Email imports", "upload_file"),
            ("emails.feedbackrejection", "Rejected webhooks", "report"),
            ("emails.emailchannel", "Email channel", "settings_applications"),
        ],
    ),
    (
        "Administration",
        [
            ("cdp.user", "Users", "group"),
            ("cdp.role", "Roles", "badge"),
            ("cdp.apitoken", "API tokens", "key"),
            ("cdp.globalsetting", "Global settings", "settings"),
            ("cdp.globalsettingchange", "Settings audit log", "history"),
        ],
    ),
]


def _item(model_admin: admin.ModelAdmin, title: str, icon: str) -> dict[str, Any]:
    opts = model_admin.model._meta

    # A plain function, not the bound method: unfold deep-copies the navigation, and a ModelAdmin cannot be.
    def permission(request: HttpRequest) -> bool:
        return model_admin.has_view_permission(request)

    return {
        "title": title,
        "icon": icon,
        "link": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
        "permission": permission,
    }


def sidebar_navigation(request: HttpRequest) -> list[dict[str, Any]]:
    registry = {model._meta.label_lower: model_admin for model, model_admin in admin.site._registry.items()}
    listed: set[str] = set()
    groups = []
    for group_title, entries in GROUPS:
        items = []
        for label, title, icon in entries:
            if label in registry:
                items.append(_item(registry[label], title, icon))
                listed.add(label)
        groups.append({"title": group_title, "separator": bool(groups), "items": items})
    others = [
        _item(model_admin, str(model_admin.model._meta.verbose_name_plural).capitalize(), "chevron_right")
        for label, model_admin in sorted(registry.items())
        if label not in listed
    ]
    if others:
        groups.append({"title": "More", "separator": True, "items": others})
    return groups
