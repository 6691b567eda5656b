from django.apps import AppConfig


class ConnectorsConfig(AppConfig):
    name = "connectors"
    verbose_name = "Connectors"

    def ready(self):
        # Registers every provider with the connector registry, and the admin of integrations, link rules
        # and people, which live beside connectors/admin.py to keep it about connections and scopes.
        from connectors import admin_integrations, admin_links, admin_people, providers  # noqa: F401
