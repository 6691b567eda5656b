from django.conf import settings
from rest_framework.permissions import BasePermission


class SchemaAccess(BasePermission):
    """The OpenAPI schema and docs: signed-in users, or anyone when VSM_API_SCHEMA_PUBLIC opens them."""

    def has_permission(self, request, view) -> bool:
        return settings.API_SCHEMA_PUBLIC or bool(request.user and request.user.is_authenticated)
