from django.apps import AppConfig


class ConnectorsConfig(AppConfig):
    name = "connectors"
    verbose_name = "Connectors"

    def ready(self):
        # Registers every provider with the connector registry, and the link rules' admin, which
        # lives beside connectors/admin.py to keep that module about connections and scopes.
        from connectors import admin_links, providers  # noqa: F401
