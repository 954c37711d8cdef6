"""The API's JSON renderer: DRF's, escaping what UTF-8 cannot carry instead of failing on it."""

from rest_framework import renderers


class JSONRenderer(renderers.JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            # A lone surrogate from the request (a JSON "\ud800" escape) echoed back, e.g. in "… is not a valid
            # choice": the response is written with \u escapes for everything outside ASCII, which carry it.
            return _AsciiJSONRenderer().render(data, accepted_media_type, renderer_context)


class _AsciiJSONRenderer(renderers.JSONRenderer):
    ensure_ascii = True
