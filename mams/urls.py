"""URLs: the admin for configuration (more routes arrive with the API and pages)."""

from django.contrib import admin
from django.urls import path

admin.site.site_header = "MAMS — Multi-Agent Marketplace Simulator"
admin.site.site_title = "MAMS admin"

urlpatterns = [
    path("admin/", admin.site.urls),
]
