from django.urls import path

from vsm.portal import analysis, landscape, requests, trace, views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("start/", views.landing, name="landing"),
    path("products/<slug:slug>/", views.product_detail, name="product"),
    path("products/<slug:slug>/summary/", views.product_summary, name="summary"),
    path("products/<slug:slug>/flow/", views.product_flow, name="flow"),
    path("products/<slug:slug>/flow/<slug:chart>.csv", views.product_flow_csv, name="flow-csv"),
    path("products/<slug:slug>/items/", views.product_items, name="items"),
    path("products/<slug:slug>/bottlenecks/", analysis.product_bottlenecks, name="bottlenecks"),
    path(
        "products/<slug:slug>/bottlenecks/<slug:table>.csv",
        analysis.product_bottlenecks_csv,
        name="bottlenecks-csv",
    ),
    path("products/<slug:slug>/analyzer/", analysis.product_item_analyzer, name="analyzer"),
    path("products/<slug:slug>/dora/", analysis.product_dora, name="dora"),
    path("products/<slug:slug>/dora/<slug:table>.csv", analysis.product_dora_csv, name="dora-csv"),
    path("products/<slug:slug>/forecast/", analysis.product_forecast, name="forecast"),
    path(
        "products/<slug:slug>/forecast/<slug:table>.csv", analysis.product_forecast_csv, name="forecast-csv"
    ),
    path("artifacts/<int:pk>/", views.artifact_detail, name="artifact"),
    path("trace/", trace.trace_search, name="trace-search"),
    path("trace/<int:pk>/", trace.trace, name="trace"),
    path("requests/", requests.request_list, name="requests"),
    path("requests/requests.csv", requests.request_list_csv, name="requests-csv"),
    path("products/<slug:slug>/requests/", requests.request_list, name="product-requests"),
    path("landscape/", landscape.landscape, name="landscape"),
]
