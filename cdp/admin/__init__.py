"""The Business Explorer (Django admin with django-unfold). Importing the modules registers their admins.

Every write goes through `cdp.services`; access comes from role features (see `base.FeatureAccessMixin`).
"""

from django.contrib import admin
from django.contrib.auth.models import Group

from cdp.admin import attributes, customers, data_sources, global_settings, users  # noqa: F401

# Access comes from roles (cdp.Role), not Django groups and permissions: hide groups to avoid confusion.
if admin.site.is_registered(Group):
    admin.site.unregister(Group)
