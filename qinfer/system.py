"""What this machine offers qinfer: CPU features and compute backends."""
import os
import platform


def _proc_cpuinfo_flags():
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("flags", "features"):
                    return line.split(":", 1)[1].split()
    except OSError:
        pass
    return []


def cpu_features():
    """CPU features relevant to qinfer's kernels, from the native core when built."""
    try:
        from .kernels.native_backend import cpu_features as native

        return native(), "native detection"
    except Exception:  # noqa: BLE001 - native module absent
        flags = set(_proc_cpuinfo_flags())
        names = {"avx2": "avx2", "fma": "fma", "f16c": "f16c", "avx512f": "avx512f",
                 "asimd": "neon", "asimddp": "dotprod", "i8mm": "i8mm"}
        found = [v for k, v in names.items() if k in flags]
        if platform.machine().lower() in ("arm64", "aarch64") and "neon" not in found:
            found.append("neon")
        return found, "/proc/cpuinfo"


def cpu_name():
    for line in open("/proc/cpuinfo", encoding="utf-8", errors="replace") if os.path.exists(
            "/proc/cpuinfo") else []:
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def report() -> str:
    from . import __version__, kernels

    from .errors import QinferError

    feats, source = cpu_features()
    st = kernels.status()
    if st.get("error"):
        raise QinferError(st["error"])
    lines = [
        f"qinfer {__version__}, Python {platform.python_version()} on {platform.system()} "
        f"{platform.machine()}",
        f"CPU: {cpu_name()}, {os.cpu_count()} logical cores",
        f"CPU features: {' '.join(feats) or 'none of avx2/fma/f16c/neon'} (from {source})",
        f"backend in use: {st['active']} ({st['why']})",
    ]
    for name in kernels.BACKENDS:
        s = st[name]
        mark = "available" if s["available"] else "unavailable"
        lines.append(f"  {name:7s} {mark}: {s['detail']}")
    return "\n".join(lines)
