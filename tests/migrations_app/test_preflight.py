"""Preflight: the execution engine reruns one item's checks on current data, with the
live CPU comparison in place of the offline one."""

import libvirt
import pytest

from migrations_app.execution.preflight import item_preflight_findings
from migrations_app.models import PlanItem
from migrations_app.services.plans import plan_add_vms, plan_create

pytestmark = pytest.mark.django_db


class IncompatibleConn:
    def compareHypervisorCPU(self, *args):  # noqa: N802 - libvirt's name
        error = libvirt.libvirtError("guest CPU needs avx512f")
        error.err = (libvirt.VIR_ERR_CPU_INCOMPATIBLE, 0, "guest CPU needs avx512f", 2)
        raise error


def test_it_reruns_one_items_checks_and_compares_the_cpu_live(demo, vm_id):
    plan = plan_create(actor=None, name="p")
    plan_add_vms(
        plan=plan,
        vms=[vm_id("api-a1-07"), vm_id("web-a1-06")],
        destination=demo["kvm-a3"],
        actor=None,
    )
    item = PlanItem.objects.get(vm__name="web-a1-06")
    offline = {f.check_id: f for f in item_preflight_findings(item=item)}
    assert "window" not in offline and offline["cpu.compat"].severity == "ok"
    assert offline["vm.state"].severity == "ok" and len(offline) == 21
    live = item_preflight_findings(item=item, dest_conn=IncompatibleConn(), cpu_xml="<cpu/>")
    cpu = [f for f in live if f.check_id == "cpu.compat"]
    assert len(cpu) == 1 and cpu[0].blocks and "avx512f" in cpu[0].message
