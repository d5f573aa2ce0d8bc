"""Proving that a pool two hosts both show is one storage: a probe volume written through
one host and looked for through the other (Nova's shared-storage test file, done through
libvirt so it works wherever the hosts are).

A directory pool with the same UUID and path on two hosts looks shared to the inventory,
but hosts built from one image, or pools defined from one template, look exactly like that
while each writes its own local disk. Migrating with VIR_MIGRATE_UNSAFE on that guess would
start the guest on whatever stale file sits at the same path on the destination.
"""

import secrets

import libvirt

PROBE_PREFIX = "ferry-share-probe-"


def probe_shared(conn_a, conn_b, pool_name: str, pool_name_b: str = "") -> tuple[bool, dict]:
    """(shared, evidence): create a raw volume of a random size in the pool through host A,
    refresh the pool on host B (named `pool_name_b` there, else the same) and look for it
    by name and size; delete it through A."""
    name = f"{PROBE_PREFIX}{secrets.token_hex(8)}.img"
    size = 4096 * (1 + secrets.randbelow(1024))
    pool_a = conn_a.storagePoolLookupByName(pool_name)
    pool_b = conn_b.storagePoolLookupByName(pool_name_b or pool_name)
    xml = (
        f"<volume><name>{name}</name><capacity unit='bytes'>{size}</capacity>"
        "<target><format type='raw'/></target></volume>"
    )
    vol = pool_a.createXML(xml, 0)
    evidence = {"probe_volume": name, "probe_bytes": size, "path_on_a": vol.path()}
    try:
        pool_b.refresh(0)
        try:
            seen = pool_b.storageVolLookupByName(name)
            seen_size = seen.info()[1]
            evidence["path_on_b"] = seen.path()
            evidence["bytes_seen_on_b"] = seen_size
            shared = seen_size == size
        except libvirt.libvirtError:
            evidence["seen_on_b"] = False
            shared = False
    finally:
        try:
            vol.delete(0)
        finally:
            try:
                pool_b.refresh(0)
            except libvirt.libvirtError:
                pass
    return shared, evidence
