"""/api/metrics/ routes, included by vsm.api.urls."""

from rest_framework.routers import SimpleRouter

from metrics.api import FlowMetricsViewSet, ForecastViewSet, ItemFlowRollupViewSet

router = SimpleRouter()
router.register("flow", FlowMetricsViewSet, basename="metrics-flow")
router.register("items", ItemFlowRollupViewSet, basename="metrics-item")
router.register("forecast", ForecastViewSet, basename="metrics-forecast")

urlpatterns = router.urls
