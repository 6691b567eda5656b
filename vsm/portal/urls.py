from django.urls import path

from vsm.portal import views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("products/<slug:slug>/", views.product_detail, name="product"),
    path("artifacts/<int:pk>/", views.artifact_detail, name="artifact"),
]
