from django.apps import AppConfig


class StitchingConfig(AppConfig):
    name = "stitching"
    verbose_name = "Identity stitching"
