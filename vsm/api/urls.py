from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from connectors.api import ToolConnectionViewSet
from vsm.api import views

router = DefaultRouter()
router.register("products", views.ProductViewSet, basename="product")
router.register("teams", views.TeamViewSet, basename="team")
router.register("artifacts", views.ArtifactViewSet, basename="artifact")
router.register("links", views.ArtifactLinkViewSet, basename="artifactlink")
router.register("connections", ToolConnectionViewSet, basename="toolconnection")


urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its script as a file: the content security policy allows no inline script.
    path("docs/", views.ApiDocsView.as_view(url_name="api-schema"), name="api-docs"),
    path("metrics/", include("metrics.api_urls")),
    path("", include(router.urls)),
]
