"""Build the lab guest: Debian's kernel plus a busybox initramfs (stdlib only).

The result is cached under LAB_CACHE (default /var/cache/ferry-lab): the
kernel .deb is downloaded once with `apt-get download`, only the vmlinuz and
the few virtio modules the guest needs are kept, and the initramfs is rebuilt
only when its inputs (init script, dirtier source, module set, busybox, guest
agent) change.

The guest agent is Debian's real `qemu-ga` (package qemu-guest-agent, the
version matching the installed QEMU when apt has it), downloaded the same
way; the shared libraries `ldd` lists for it and the loader are copied from
this machine into the initramfs (`/lib/x86_64-linux-gnu`, `/lib64`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Modules the guest loads (their dependencies are resolved from the .ko files).
WANTED_MODULES = ["virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "pvpanic_pci"]
BUSYBOX_CANDIDATES = ["/bin/busybox", "/usr/bin/busybox"]


def cache_dir() -> Path:
    return Path(os.environ.get("LAB_CACHE", "/var/cache/ferry-lab"))


def _run(cmd, **kw) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def kernel_package() -> str:
    """Name of the versioned Debian kernel package, e.g. linux-image-6.1.0-56-amd64."""
    if os.environ.get("LAB_KERNEL_PACKAGE"):
        return os.environ["LAB_KERNEL_PACKAGE"]
    out = _run(["apt-cache", "depends", "linux-image-amd64"])
    m = re.search(r"Depends:\s*(linux-image-[0-9][^\s]*-amd64)", out)
    if not m:
        raise RuntimeError(
            "cannot find the kernel package behind linux-image-amd64 "
            "(run apt-get update?); apt-cache said:\n" + out
        )
    return m.group(1)


def _module_depends(ko: Path) -> list[str]:
    data = ko.read_bytes()
    m = re.search(rb"(?:^|\0)depends=([^\0]*)\0", data)
    if not m or not m.group(1):
        return []
    return [d.decode() for d in m.group(1).split(b",") if d]


def _resolve_modules(moddir: Path, wanted: list[str]) -> list[Path]:
    """Return .ko paths in load order (dependencies before dependants)."""
    index = {}
    for ko in moddir.rglob("*.ko"):
        index[ko.stem.replace("-", "_")] = ko
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen:
            return
        seen.add(name)
        ko = index.get(name)
        if ko is None:  # built into the kernel
            return
        for dep in _module_depends(ko):
            visit(dep)
        order.append(ko)

    for w in wanted:
        visit(w)
    return order


def fetch_kernel(cache: Path | None = None) -> dict:
    """Download and unpack the kernel once; returns {'version', 'vmlinuz', 'modules'}."""
    cache = cache or cache_dir()
    pkg = kernel_package()
    kdir = cache / "kernel" / pkg
    meta = kdir / "kernel.json"
    if meta.exists():
        info = json.loads(meta.read_text())
        if (
            info.get("wanted") == WANTED_MODULES
            and Path(info["vmlinuz"]).exists()
            and all(Path(m).exists() for m in info["modules"])
        ):
            return info
    kdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        # apt-get download writes into the cwd; _apt cannot write to our dir,
        # which only costs a warning (download runs unsandboxed as root).
        subprocess.run(["apt-get", "download", pkg], cwd=tmp, check=True, capture_output=True)
        debs = list(Path(tmp).glob("*.deb"))
        if not debs:
            raise RuntimeError(f"apt-get download {pkg} produced no .deb")
        root = Path(tmp) / "x"
        _run(["dpkg", "-x", str(debs[0]), str(root)])
        vmlinuz = next((root / "boot").glob("vmlinuz-*"))
        version = vmlinuz.name[len("vmlinuz-") :]
        mods = _resolve_modules(root / "lib" / "modules" / version, WANTED_MODULES)
        shutil.copy2(vmlinuz, kdir / "vmlinuz")
        (kdir / "modules").mkdir(exist_ok=True)
        kept = []
        for ko in mods:
            dst = kdir / "modules" / ko.name
            shutil.copy2(ko, dst)
            kept.append(str(dst))
    info = {
        "package": pkg,
        "version": version,
        "vmlinuz": str(kdir / "vmlinuz"),
        "modules": kept,
        "wanted": WANTED_MODULES,
    }
    meta.write_text(json.dumps(info, indent=1))
    return info


def _qga_package_candidates() -> list[str]:
    """qemu-guest-agent of the same version as the installed QEMU first, then apt's choice."""
    if os.environ.get("LAB_QGA_PACKAGE"):
        return [os.environ["LAB_QGA_PACKAGE"]]
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "qemu-system-x86"], capture_output=True, text=True
    )
    version = out.stdout.strip() if out.returncode == 0 else ""
    return ([f"qemu-guest-agent={version}"] if version else []) + ["qemu-guest-agent"]


def _ldd(binary: Path) -> list[tuple[str, Path]]:
    """(path inside the guest, file on this machine) for every library and the loader."""
    out = _run(["ldd", str(binary)])
    found: list[tuple[str, Path]] = []
    for line in out.splitlines():
        line = line.strip()
        if "not found" in line:
            raise RuntimeError(f"{binary}: a library is missing on this machine: {line}")
        m = re.match(r"(\S+) => (/\S+) \(", line)
        if m:  # libfoo.so.1 => /lib/x86_64-linux-gnu/libfoo.so.1 (0x...)
            found.append((f"lib/x86_64-linux-gnu/{m.group(1)}", Path(m.group(2))))
            continue
        m = re.match(r"(/\S*ld-linux\S*) \(", line)
        if m:  # /lib64/ld-linux-x86-64.so.2 (0x...)
            found.append((m.group(1).lstrip("/"), Path(m.group(1))))
    if not any("ld-linux" in g for g, _ in found):
        raise RuntimeError(f"ldd {binary}: no loader found in:\n{out}")
    return found


def fetch_guest_agent(cache: Path | None = None) -> dict:
    """Download qemu-ga once and collect its libraries; returns {'version', 'files'}.

    'files' maps each path inside the initramfs to a cached copy on this machine.
    """
    cache = cache or cache_dir()
    root = cache / "qga"
    meta = root / "qga.json"
    if meta.exists():
        info = json.loads(meta.read_text())
        if all(Path(f).exists() for f in info["files"].values()):
            return info
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        errors = []
        for pkg in _qga_package_candidates():
            r = subprocess.run(
                ["apt-get", "download", pkg], cwd=tmp, capture_output=True, text=True
            )
            if r.returncode == 0:
                break
            errors.append(f"{pkg}: {r.stderr.strip()[-200:]}")
        debs = list(Path(tmp).glob("*.deb"))
        if not debs:
            raise RuntimeError("apt-get download qemu-guest-agent failed: " + "; ".join(errors))
        x = Path(tmp) / "x"
        _run(["dpkg", "-x", str(debs[0]), str(x)])
        version = _run(["dpkg-deb", "-f", str(debs[0]), "Version"]).strip()
        binary = x / "usr" / "sbin" / "qemu-ga"
        files = {"bin/qemu-ga": binary} | dict(_ldd(binary))
        out = root / "files"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        kept = {}
        for inside, src in files.items():
            dst = out / inside.replace("/", "_")
            shutil.copyfile(src, dst)  # follows symlinks: the real library under its soname
            kept[inside] = str(dst)
    info = {"version": version, "files": kept}
    meta.write_text(json.dumps(info, indent=1))
    return info


class _Cpio:
    """Minimal writer for the 'newc' cpio format the kernel unpacks."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        nameb = name.encode() + b"\0"
        hdr = "070701" + "".join(
            f"{v:08x}" for v in (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nameb), 0)
        )
        self.ino += 1
        self.buf.write(hdr.encode() + nameb)
        self.buf.write(b"\0" * ((4 - (110 + len(nameb)) % 4) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * ((4 - len(data) % 4) % 4))

    def dir(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, 0o100000 | mode, data)

    def close(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def _busybox() -> Path:
    for c in BUSYBOX_CANDIDATES:
        p = Path(c)
        if p.exists():
            # a dynamic ELF names its loader (PT_INTERP) near the start
            if b"ld-linux" not in p.read_bytes()[:8192]:
                return p
    raise RuntimeError("a static busybox is needed (apt-get install busybox-static)")


def build_dirtier(out: Path) -> None:
    src = HERE / "dirtier.c"
    subprocess.run(
        ["gcc", "-static", "-O2", "-Wall", "-o", str(out), str(src)],
        check=True,
        capture_output=True,
        text=True,
    )


def build_guest(cache: Path | None = None, force: bool = False) -> dict:
    """Make sure kernel and initramfs exist; returns {'kernel', 'initrd', 'version', 'key'}."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    k = fetch_kernel(cache)
    qga = fetch_guest_agent(cache)
    busybox = _busybox()
    h = hashlib.sha256()
    for part in (
        (HERE / "init.sh").read_bytes(),
        (HERE / "dirtier.c").read_bytes(),
        busybox.read_bytes(),
        "\n".join(Path(m).name for m in k["modules"]).encode(),
        k["version"].encode(),
        *(inside.encode() + Path(f).read_bytes() for inside, f in sorted(qga["files"].items())),
    ):
        h.update(hashlib.sha256(part).digest())
    key = h.hexdigest()[:16]
    initrd = cache / "initrd" / f"initrd-{key}.img"
    result = {
        "kernel": k["vmlinuz"],
        "initrd": str(initrd),
        "version": k["version"],
        "key": key,
        "qga_version": qga["version"],
    }
    if initrd.exists() and not force:
        return result
    initrd.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        dirtier = Path(tmp) / "dirtier"
        build_dirtier(dirtier)
        c = _Cpio()
        for d in (
            "bin",
            "sbin",
            "dev",
            "proc",
            "sys",
            "tmp",
            "run",
            "etc",
            "lib",
            "lib/modules",
            "lib/x86_64-linux-gnu",
            "lib64",
        ):
            c.dir(d)
        c.file("init", (HERE / "init.sh").read_bytes(), 0o755)
        c.file("bin/busybox", busybox.read_bytes(), 0o755)
        c.file("bin/dirtier", dirtier.read_bytes(), 0o755)
        for inside, f in sorted(qga["files"].items()):
            c.file(inside, Path(f).read_bytes(), 0o755)
        for m in k["modules"]:
            c.file("lib/modules/" + Path(m).name, Path(m).read_bytes())
        c.file("etc/modules.load", "".join(Path(m).name + "\n" for m in k["modules"]).encode())
        part = Path(tmp) / "initrd.img"
        part.write_bytes(gzip.compress(c.close(), compresslevel=6))
        os.replace(part, initrd)
    return result


if __name__ == "__main__":
    print(json.dumps(build_guest(force="--force" in sys.argv), indent=1))
