from rest_framework.routers import DefaultRouter

from inventory.api.views import (
    HostViewSet,
    NetworkViewSet,
    StoragePoolViewSet,
    VirtualMachineViewSet,
)

router = DefaultRouter()
router.register("hosts", HostViewSet, basename="host")
router.register("storage-pools", StoragePoolViewSet, basename="storagepool")
router.register("networks", NetworkViewSet, basename="network")
router.register("vms", VirtualMachineViewSet, basename="vm")

urlpatterns = router.urls
