"""Logged-in test clients: the portal's (a session) and the REST API's (DRF's forced authentication)."""

from django.test import Client
from rest_framework.test import APIClient


def portal_client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def api_client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client
