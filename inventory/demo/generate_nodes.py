"""Writes the demo inventory: libvirt test-driver node files, one per demo host.

Run `python inventory/demo/generate_nodes.py` to regenerate nodes/*.xml (deterministic).
The files are shipped so `make run` syncs them through the real libvirt sync path.
"""

import random
import uuid
from pathlib import Path
from xml.sax.saxutils import escape

OUT = Path(__file__).resolve().parent / "nodes"
NS = uuid.UUID("6f0d1c2e-9a51-4f4b-8a53-0c6f2f1d7e11")

HOSTS = [
    # name, group, cpu model, logical cpus, memory GiB, networks, shared pool
    ("kvm-a1", "site-a", "Skylake-Server", 32, 256, ["prod", "backup"], "nfs"),
    ("kvm-a2", "site-a", "Skylake-Server", 32, 256, ["prod", "backup"], "nfs"),
    ("kvm-a3", "site-a", "Cascadelake-Server", 48, 384, ["prod", "backup"], "nfs"),
    ("kvm-b1", "site-b", "EPYC-Milan", 64, 512, ["prod", "dmz"], "rbd"),
    ("kvm-b2", "site-b", "EPYC-Milan", 64, 512, ["prod"], "rbd"),
    # An empty spare: room for a maintenance campaign to drain site-b one host at a time
    # (each host runs a member of anti:db-cluster, which may not share a host).
    ("kvm-b3", "site-b", "EPYC-Milan", 64, 512, ["prod", "dmz"], "rbd"),
]
SPARE = {"kvm-b3"}
NETWORKS = {
    "prod": ("br-prod", 120, "bridge"),
    "backup": ("br-backup", 130, "bridge"),
    "dmz": ("br-dmz", 300, "bridge"),
}
VM_KINDS = [
    # prefix, vcpus, memory MiB, disk GiB, tags, criticality, owner
    ("web", 2, 4096, 20, ["web"], "normal", "team-web"),
    ("api", 4, 8192, 40, ["api"], "high", "team-api"),
    ("db", 8, 32768, 200, ["db", "anti:db-cluster"], "critical", "team-data"),
    ("cache", 2, 16384, 10, ["cache"], "normal", "team-api"),
    ("batch", 16, 65536, 100, ["batch"], "low", "team-data"),
    ("ci", 4, 8192, 80, ["ci"], "low", "team-platform"),
]


def vm_xml(rng, host, index, kind):
    prefix, vcpus, memory, disk_gib, tags, criticality, owner = kind
    name = f"{prefix}-{host[0].split('-')[1]}-{index:02d}"
    vm_uuid = uuid.uuid5(NS, name)
    mode = rng.choice(["host-model", "host-model", "custom", "host-passthrough"])
    cpu = f"<cpu mode='{mode}'/>"
    if mode == "custom":
        cpu = f"<cpu mode='custom'><model>{host[2]}</model><feature policy='require' name='aes'/></cpu>"
    shared = host[6]
    local = rng.random() < 0.2
    pool_dir = f"/var/lib/libvirt/images/{host[0]}" if local else f"/srv/{shared}"
    disks = [
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{pool_dir}/{name}.qcow2'/><target dev='vda' bus='virtio'/></disk>"
    ]
    if rng.random() < 0.1:
        disks.append(
            "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>"
            "<source file='/var/lib/libvirt/iso/debian-12.iso'/><target dev='sda' bus='sata'/>"
            "<readonly/></disk>"
        )
    nets = [n for n in host[5] if n != "dmz"] if prefix != "web" else host[5]
    nics = "".join(
        f"<interface type='network'><mac address='52:54:00:{rng.randrange(256):02x}:"
        f"{rng.randrange(256):02x}:{rng.randrange(256):02x}'/><source network='{n}'/>"
        f"<model type='virtio'/></interface>"
        for n in nets[: 1 + (prefix == "db")]
    )
    hostdev = ""
    if prefix == "batch" and index == 1:
        hostdev = (
            "<hostdev mode='subsystem' type='pci' managed='yes'><source>"
            "<address domain='0x0000' bus='0x3b' slot='0x00' function='0x0'/></source></hostdev>"
        )
    state = "5" if rng.random() < 0.12 else "1"
    meta = (
        "<metadata><ferry:vm xmlns:ferry='http://ferry.local/xmlns/vm/1.0'>"
        f"<ferry:tags>{escape(','.join(tags))}</ferry:tags><ferry:owner>{owner}</ferry:owner>"
        f"<ferry:criticality>{criticality}</ferry:criticality></ferry:vm></metadata>"
    )
    return (
        f"<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test'>"
        f"<name>{name}</name><uuid>{vm_uuid}</uuid>{meta}"
        f"<memory unit='MiB'>{memory}</memory><vcpu>{vcpus}</vcpu>"
        f"<os><type arch='x86_64' machine='pc-q35-8.2'>hvm</type></os>{cpu}"
        f"<devices>{''.join(disks)}{nics}{hostdev}</devices>"
        f"<test:runstate>{state}</test:runstate></domain>",
        (name, pool_dir, disk_gib, local),
    )


def pool_xml(name, kind, pool_uuid, path, volumes, source=""):
    vols = "".join(
        f"<volume type='file'><name>{vname}.qcow2</name><capacity unit='GiB'>{size}</capacity>"
        f"<allocation unit='GiB'>{max(1, size // 10)}</allocation>"
        f"<target><path>{path}/{vname}.qcow2</path><format type='qcow2'/></target></volume>"
        for vname, size in volumes
    )
    return (
        f"<pool type='{kind}'><name>{name}</name><uuid>{pool_uuid}</uuid>"
        f"<capacity unit='GiB'>4000</capacity><allocation unit='GiB'>0</allocation>"
        f"<available unit='GiB'>4000</available><source>{source}</source>"
        f"<target><path>{path}</path></target>{vols}</pool>"
    )


def main():
    rng = random.Random(42)  # noqa: S311 - demo data, not security
    OUT.mkdir(exist_ok=True)
    for host in HOSTS:
        name, _group, cpu_model, cpus, mem_gib, networks, shared = host
        domains, shared_vols, local_vols = [], [], []
        for index in range(1, 1 if name in SPARE else 8):
            kind = VM_KINDS[(index + len(name)) % len(VM_KINDS)]
            xml, (vname, _path, size, local) = vm_xml(rng, host, index, kind)
            domains.append(xml)
            (local_vols if local else shared_vols).append((vname, size))
        if shared == "nfs":
            shared_pool = pool_xml(
                "nfs-vms",
                "netfs",
                uuid.uuid5(NS, "nfs"),
                "/srv/nfs",
                shared_vols,
                "<host name='nfs1.site-a.internal'/><dir path='/export/vms'/><format type='nfs'/>",
            )
        else:
            shared_pool = pool_xml(
                "ceph-vms",
                "rbd",
                uuid.uuid5(NS, "rbd"),
                "/srv/rbd",
                shared_vols,
                "<host name='mon1.site-b.internal' port='6789'/><name>vms</name>",
            )
        local_pool = pool_xml(
            "local",
            "dir",
            uuid.uuid5(NS, f"local-{name}"),
            f"/var/lib/libvirt/images/{name}",
            local_vols,
        )
        nets = "".join(
            f"<network><name>{n}</name><uuid>{uuid.uuid5(NS, n)}</uuid>"
            f"<forward mode='{NETWORKS[n][2]}'/><bridge name='{NETWORKS[n][0]}'/>"
            f"<vlan><tag id='{NETWORKS[n][1]}'/></vlan></network>"
            for n in networks
        )
        node = (
            "<?xml version='1.0'?>\n"
            f"<!-- Ferry demo host {name}: generated by inventory/demo/generate_nodes.py -->\n"
            f"<node><cpu><mhz>2600</mhz><model>{cpu_model}</model><active>{cpus}</active>"
            f"<total>{cpus}</total><nodes>1</nodes><sockets>2</sockets>"
            f"<cores>{cpus // 4}</cores><threads>2</threads></cpu>"
            f"<memory>{mem_gib * 1024 * 1024}</memory>"
            f"{''.join(domains)}{shared_pool}{local_pool}{nets}</node>\n"
        )
        (OUT / f"{name}.xml").write_text(node, encoding="utf-8")
    print(f"wrote {len(HOSTS)} node files to {OUT}")


if __name__ == "__main__":
    main()

# Host groups, for demo_setup to register each host in its site.
HOST_GROUPS = {h[0]: h[1] for h in HOSTS}
