"""Filters of the inventory API."""

import django_filters

from inventory.models import Host, Network, StoragePool, VirtualMachine


class HostFilter(django_filters.FilterSet):
    class Meta:
        model = Host
        fields = {
            "state": ["exact"],
            "group": ["exact"],
            "transport": ["exact"],
            "name": ["exact", "icontains"],
        }


class StoragePoolFilter(django_filters.FilterSet):
    host = django_filters.NumberFilter(field_name="hosts", label="reachable from host id")

    class Meta:
        model = StoragePool
        fields = {"shared": ["exact"], "pool_type": ["exact"], "name": ["exact"]}


class NetworkFilter(django_filters.FilterSet):
    host = django_filters.NumberFilter(field_name="hosts", label="carried by host id")

    class Meta:
        model = Network
        fields = {"name": ["exact"], "forward_mode": ["exact"]}


class VirtualMachineFilter(django_filters.FilterSet):
    tag = django_filters.CharFilter(method="filter_tag", label="has tag")
    host_name = django_filters.CharFilter(field_name="host__name")

    class Meta:
        model = VirtualMachine
        fields = {
            "host": ["exact"],
            "state": ["exact"],
            "missing": ["exact"],
            "criticality": ["exact"],
            "name": ["exact", "icontains"],
            "memory_mib": ["gte", "lte"],
        }

    def filter_tag(self, queryset, name, value):
        # JSON containment is not portable to SQLite, so match the serialized list.
        return queryset.filter(tags__icontains=f'"{value}"')
