"""`{% entity_email_addresses entity_id as rows %}`: the profile page's email block (an include in cdp's
customer_profile.html, so cdp needs no code for it)."""

from django import template

from emails.selectors import addresses_of_entity

register = template.Library()


@register.simple_tag(takes_context=True)
def entity_email_addresses(context, entity_id: str) -> dict:
    from cdp.admin.base import user_has_feature
    from cdp.features import Feature

    request = context.get("request")
    return {
        "rows": addresses_of_entity(entity_id=entity_id),
        "can_block": user_has_feature(request, Feature.EMAILS_BLOCK) if request else False,
        "can_view": user_has_feature(request, Feature.EMAILS_VIEW) if request else False,
    }
