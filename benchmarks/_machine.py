"""What a benchmark ran on, printed with its table: the CPU, each library's BLAS and the kernels it
picked for this CPU, and the threads every contender used.

    import _machine; print(_machine.describe())

threadpoolctl names numpy's BLAS (OpenBLAS: its version and the kernel set it chose, such as
Haswell for AVX2 or SkylakeX for AVX-512). PyTorch links MKL and oneDNN into itself, where
threadpoolctl sees only its OpenMP runtime, so a short child process asks them (MKL_VERBOSE and
ONEDNN_VERBOSE) which version and instruction set they run; the ATen kernels' level comes from
torch.backends.cpu.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

SIMD = ("avx512f", "avx2", "avx", "sse4_2", "asimd", "neon")  # the widest is named
CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else platform's best guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() in ("model name", "Model", "cpu model"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.check_output(
                ["sysctl", "-n", "machdep.cpu.brand_string"], text=True
            ).strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_simd() -> str:
    """The widest vector extension the CPU reports (Linux's flags), or the machine's name."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    match = re.search(r"^(flags|Features)\s*:(.*)$", text, re.M)
    flags = set(match.group(2).split()) if match else set()
    return next((name.upper() for name in SIMD if name in flags), platform.machine())


def cpu_caches() -> str:
    """cpu0's data and unified caches as the kernel reports them, e.g. 'L1d 32K, L2 1024K'."""
    parts = []
    for index in sorted(CACHE_DIR.glob("index*")):
        try:
            kind = (index / "type").read_text().strip()
            if kind == "Instruction":
                continue
            level = (index / "level").read_text().strip()
            size = (index / "size").read_text().strip()
            shared = (index / "shared_cpu_list").read_text().strip()
        except OSError:
            continue
        name = f"L{level}{'d' if kind == 'Data' else ''}"
        parts.append(
            f"{name} {size}" + (f" (cpus {shared})" if "-" in shared or "," in shared else "")
        )
    return ", ".join(parts) or "cache sizes not reported"


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _blas_of(package_dir: str) -> list[dict]:
    """threadpoolctl's records of the libraries loaded from inside `package_dir`."""
    from threadpoolctl import threadpool_info

    return [lib for lib in threadpool_info() if lib.get("filepath", "").startswith(package_dir)]


def _lib(lib: dict) -> str:
    arch = f", kernel {lib['architecture']}" if lib.get("architecture") else ""
    layer = f", {lib['threading_layer']}" if lib.get("threading_layer") else ""
    return (
        f"{lib['internal_api']} {lib.get('version') or '(version unknown)'}{arch}, "
        f"{lib['num_threads']} threads{layer}"
    )


_PROBE = textwrap.dedent("""
    import sys, torch, torch.nn.functional as F
    torch.set_num_threads(int(sys.argv[1]))
    x = torch.ones(2, 3, 8, 8, requires_grad=True); w = torch.ones(4, 3, 3, 3, requires_grad=True)
    F.conv2d(x, w, padding=1).sum().backward()
    a = torch.ones(64, 64); a @ a
""")


def torch_libraries(threads: int) -> list[str]:
    """Which MKL and oneDNN torch runs and on what instruction set, asked of a child process."""
    env = dict(os.environ, MKL_VERBOSE="1", ONEDNN_VERBOSE="1")
    try:
        out = subprocess.run(
            [sys.executable, "-c", _PROBE, str(threads)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    lines = []
    mkl = re.search(
        r"MKL_VERBOSE (?:oneMKL|Intel\(R\) MKL) (.*?) Product build \S+ for (.*?), Lnx", out
    )
    if mkl:
        lines.append(f"MKL {mkl.group(1)} ({mkl.group(2)})")
    dnn = re.search(r"oneDNN (v[\d.]+)", out)
    isa = re.search(r"cpu,isa:(.*)", out)
    conv = re.search(r"primitive,exec,cpu,convolution,([^,]+),forward", out)
    if dnn:
        lines.append(
            f"oneDNN {dnn.group(1)}"
            + (f", ISA {isa.group(1).strip()}" if isa else "")
            + (f", convolution kernel {conv.group(1)}" if conv else "")
        )
    return lines


def describe(torch_threads: int | None = None, cnn_core_threads: int | None = None) -> str:
    """A few lines naming the CPU, the BLAS libraries and kernels, and the threads in use."""
    import numba

    lines = [
        f"CPU: {cpu_model()}, {_cores()} cores available to this process, widest SIMD "
        f"{cpu_simd()}; {cpu_caches()}",
        f"Python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}"
        f" (code generated for {_numba_target()})",
    ]
    numpy_libs = _blas_of(str(Path(np.__file__).parent)) or [
        lib for lib in _all_blas() if "torch" not in lib.get("filepath", "")
    ]
    for lib in numpy_libs:
        lines.append(f"numpy BLAS: {_lib(lib)}")
    if not numpy_libs:
        lines.append("numpy BLAS: none threadpoolctl can name")
    if "torch" in sys.modules:
        import torch

        lines.append(
            f"torch {torch.__version__}: ATen CPU kernels {torch.backends.cpu.get_cpu_capability()}"
            f", {torch.get_num_threads()} intra-op threads"
        )
        for text in torch_libraries(torch_threads or torch.get_num_threads()):
            lines.append(f"torch {text}")
        for lib in _blas_of(str(Path(torch.__file__).parent)):
            lines.append(f"torch runtime (threadpoolctl): {_lib(lib)}")
    threads = []
    if torch_threads is not None:
        threads.append(f"torch {torch_threads}")
    threads.append(f"numpy BLAS {min((lib['num_threads'] for lib in numpy_libs), default=1)}")
    if cnn_core_threads is not None:
        threads.append(f"cnn_core convolution chunks {cnn_core_threads} (BLAS 1 each meanwhile)")
    lines.append("threads: " + ", ".join(threads))
    return "\n".join(lines)


def _all_blas() -> list[dict]:
    from threadpoolctl import threadpool_info

    return [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]


def _numba_target() -> str:
    """The CPU numba compiles the kit's kernels for (NUMBA_CPU_NAME, else the host's)."""
    name = os.environ.get("NUMBA_CPU_NAME")
    if name and name != "host":
        return name + " (NUMBA_CPU_NAME)"
    try:
        import llvmlite.binding as llvm

        return llvm.get_host_cpu_name()
    except Exception:  # llvmlite missing or too old: say so rather than fail the benchmark
        return "the host CPU"


if __name__ == "__main__":
    print(describe())
