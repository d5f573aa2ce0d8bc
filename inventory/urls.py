from django.urls import path

from inventory import views

app_name = "inventory"

urlpatterns = [
    path("hosts/", views.host_list, name="host-list"),
    path("hosts/add/", views.host_add_view, name="host-add"),
    path("hosts/<int:pk>/", views.host_detail, name="host-detail"),
    path("hosts/<int:pk>/sync/", views.host_sync_view, name="host-sync"),
    path("vms/<int:pk>/", views.vm_detail, name="vm-detail"),
]
