from django.urls import path

from connectors.views import webhook_receive_view

app_name = "connectors"

urlpatterns = [
    path("<int:connection_id>/", webhook_receive_view, name="webhook"),
]
