"""/api/metrics/ routes, included by vsm.api.urls."""

from rest_framework.routers import SimpleRouter

from metrics.api import (
    BottleneckViewSet,
    DoraMetricsViewSet,
    FlowMetricsViewSet,
    ForecastViewSet,
    ItemFlowRollupViewSet,
    LeadTimeViewSet,
)

router = SimpleRouter()
router.register("flow", FlowMetricsViewSet, basename="metrics-flow")
router.register("items", ItemFlowRollupViewSet, basename="metrics-item")
router.register("forecast", ForecastViewSet, basename="metrics-forecast")
router.register("dora", DoraMetricsViewSet, basename="metrics-dora")
# End-to-end lead time and bottlenecks
router.register("lead-time", LeadTimeViewSet, basename="metrics-lead-time")
router.register("bottlenecks", BottleneckViewSet, basename="metrics-bottlenecks")

urlpatterns = router.urls
