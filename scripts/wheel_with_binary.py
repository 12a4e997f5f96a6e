"""Adds the ``steplake`` program to the pure-Python wheel pip built from
``python/`` (see build-wheel.sh): the program goes to the wheel's scripts
(installed into the environment's ``bin``), the tag becomes this machine's
platform, and RECORD is written anew.

    python wheel_with_binary.py PURE_WHEEL PROGRAM OUTDIR

Prints the path of the wheel it wrote.
"""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import subprocess
import sys
import zipfile
from pathlib import Path


def platform_tag() -> str:
    libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    name, _, version = libc.partition(" ")
    if name != "glibc":
        raise SystemExit(f"cannot tag the wheel: this is not a glibc system ({libc!r})")
    major, minor = version.split(".")[:2]
    return f"manylinux_{major}_{minor}_{platform.machine()}"


def digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def main(pure: Path, program: Path, out: Path) -> Path:
    name, version = pure.name.split("-")[:2]
    reported = subprocess.run([str(program), "--version"], capture_output=True, text=True, check=True).stdout.split()
    if reported[-1:] != [version]:
        raise SystemExit(f"{program} is version {' '.join(reported)}, the package {version}: "
                         "build both from the same commit")
    tag = f"py3-none-{platform_tag()}"
    target = out / f"{name}-{version}-{tag}.whl"
    dist_info = f"{name}-{version}.dist-info"
    records: list[str] = []
    with zipfile.ZipFile(pure) as source, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as wheel:
        def add(info: zipfile.ZipInfo, data: bytes) -> None:
            wheel.writestr(info, data)
            records.append(f"{info.filename},{digest(data)},{len(data)}")

        for info in source.infolist():
            if info.filename in (f"{dist_info}/RECORD", f"{dist_info}/WHEEL"):
                continue
            add(info, source.read(info))
        lines = [line for line in source.read(f"{dist_info}/WHEEL").decode().splitlines()
                 if not line.startswith(("Tag:", "Root-Is-Purelib:"))]
        lines += ["Root-Is-Purelib: false", f"Tag: {tag}"]
        add(zipfile.ZipInfo(f"{dist_info}/WHEEL"), ("\n".join(lines) + "\n").encode())
        script = zipfile.ZipInfo(f"{name}-{version}.data/scripts/steplake")
        script.external_attr = (0o100755 << 16)
        script.compress_type = zipfile.ZIP_DEFLATED
        add(script, program.read_bytes())
        records.append(f"{dist_info}/RECORD,,")
        wheel.writestr(f"{dist_info}/RECORD", "\n".join(records) + "\n")
    return target


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
