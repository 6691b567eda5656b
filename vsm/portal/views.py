from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import render

from vsm import selectors


@login_required
def home(request):
    return render(request, "portal/home.html", {"products": selectors.product_list_for(request.user)})


@login_required
def product_detail(request, slug: str):
    product = selectors.product_get_for(request.user, slug)
    page = Paginator(selectors.artifact_list_for(request.user, product), 50).get_page(request.GET.get("page"))
    return render(request, "portal/product.html", {"product": product, "page": page})


@login_required
def artifact_detail(request, pk: int):
    artifact = selectors.artifact_get_for(request.user, pk)
    hidden = selectors.hidden_fields_for(request.user, artifact)
    context = {
        "artifact": artifact,
        "fields": {name: value for name, value in artifact.fields.items() if name not in hidden},
        "show_value": "value" not in hidden,
        "transitions": artifact.transitions.order_by("at", "id"),
        "links": selectors.links_of(request.user, artifact),
    }
    return render(request, "portal/artifact.html", context)
