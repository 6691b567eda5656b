"""The webhook receiver: /hooks/<connection id>/ (POST only, no CSRF: tools sign instead).

Thin: it reads at most MAX_BODY_BYTES of the body and hands over to connectors.webhooks, which checks
the signature, records the delivery and queues its processing. Answers are short JSON and never
carry a secret.
"""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from connectors.webhooks import MAX_BODY_BYTES, webhook_connector, webhook_delivery_receive

TOO_LARGE = f"the body is over {MAX_BODY_BYTES} bytes"


def answer(status: int, detail: str) -> HttpResponse:
    if status == 204:
        return HttpResponse(status=204)
    return JsonResponse({"detail": detail}, status=status)


@csrf_exempt
@require_POST
def webhook_receive_view(request: HttpRequest, connection_id: int) -> HttpResponse:
    found = webhook_connector(connection_id)
    if found is None:
        return answer(404, "no connection with this id receives webhooks")
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return answer(400, "the Content-Length header is not a number")
    if declared > MAX_BODY_BYTES:
        return answer(413, TOO_LARGE)
    body = request.read(MAX_BODY_BYTES + 1)  # never more than the limit, whatever the header said
    if len(body) > MAX_BODY_BYTES:
        return answer(413, TOO_LARGE)
    connection, connector = found
    result = webhook_delivery_receive(connection, connector, request.headers, body)
    return answer(result.status, result.detail)
