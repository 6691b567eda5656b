from django.apps import AppConfig


class ConnectorsConfig(AppConfig):
    name = "connectors"
    verbose_name = "Connectors"

    def ready(self):
        # Registers every provider with the connector registry.
        from connectors import providers  # noqa: F401
