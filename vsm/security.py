"""Who is asking, and what browsers and proxies may keep: two rules every request passes through.

Client address (`client_address`, django-axes' AXES_CLIENT_IP_CALLABLE): with VSM_TRUSTED_PROXIES=0
(the default) it is the address of the connection, REMOTE_ADDR, and X-Forwarded-For is ignored, since
anyone can send one. Behind N reverse proxies that each append the address they received the request
from to X-Forwarded-For (nginx's `$proxy_add_x_forwarded_for`, most load balancers), set N: the client
is the N-th address from the right, the one the outermost trusted proxy saw. Addresses further left were
written by the client and are never believed. A request with fewer addresses than N did not come through
the proxies, and a value that is not an IP address is ignored: both fall back to REMOTE_ADDR. Without
this, every client behind a proxy shares the proxy's address, and failed logins against a username lock
that user out for everyone (django-axes locks a username and an address together).

Caching (`NoStoreMiddleware`): the portal's pages, CSV exports and API answers hold data a person was
allowed to see at that moment; none may be kept by a browser's cache or a shared proxy. Every response
that does not set its own Cache-Control gets `no-store` (Django's never-cache headers); static files are
served before this middleware runs and stay cacheable.
"""

import ipaddress

from django.conf import settings
from django.utils.cache import add_never_cache_headers


def client_address(request) -> str | None:
    remote = request.META.get("REMOTE_ADDR")
    proxies = settings.TRUSTED_PROXIES
    if proxies <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if len(forwarded) < proxies:
        return remote
    candidate = forwarded[-proxies]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


class NoStoreMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not response.has_header("Cache-Control"):
            add_never_cache_headers(response)
        return response
