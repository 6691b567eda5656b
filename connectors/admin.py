from django.contrib import admin

from connectors.models import ToolConnection
from vsm.admin import HoldsArtifactsAdmin


@admin.register(ToolConnection)
class ToolConnectionAdmin(HoldsArtifactsAdmin):
    list_display = ["kind", "name", "base_url", "partner"]
    list_display_links = ["name"]
    list_filter = ["kind", "partner"]
    list_select_related = ["partner"]
    search_fields = ["name", "base_url"]
    autocomplete_fields = ["partner"]
