from django.urls import path

from vsm.portal import views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("products/<slug:slug>/", views.product_detail, name="product"),
    path("products/<slug:slug>/summary/", views.product_summary, name="summary"),
    path("products/<slug:slug>/flow/", views.product_flow, name="flow"),
    path("products/<slug:slug>/flow/<slug:chart>.csv", views.product_flow_csv, name="flow-csv"),
    path("products/<slug:slug>/items/", views.product_items, name="items"),
    path("artifacts/<int:pk>/", views.artifact_detail, name="artifact"),
]
