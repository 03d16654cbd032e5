"""System metrics sampled off the training thread: GPUs (NVML), the process, the host.

:class:`SystemSampler` is a thread with its own timer: every ``interval`` seconds (the
tracker's ``system_interval``, default :data:`DEFAULT_INTERVAL`; 0 turns sampling off) it
reads the sources below and hands one sample (a dict of numbers) to its callback. Nothing
runs on the training thread, not even a timestamp check. It never imports torch and never
creates a CUDA context (NVML needs none).

Metrics (names as stored, values as numbers):

==========================  ===============================================  ============
name                        what                                              source
==========================  ===============================================  ============
``gpu.N.util``              GPU utilisation, % of the last sample period      NVML
``gpu.N.mem_util``          memory-controller utilisation, %                  NVML
``gpu.N.mem_used_gib``      device memory used, GiB (2**30 bytes)             NVML
``gpu.N.mem_total_gib``     device memory, GiB                                NVML
``gpu.N.power_w``           power draw, W                                     NVML
``gpu.N.temp_c``            GPU temperature, degrees C                        NVML
``proc.cpu_percent``        this process's CPU, % of one core (can pass 100)  psutil
``proc.rss_gib``            this process's resident memory, GiB               psutil
``host.cpu_percent``        the host's CPU, % of all cores                    psutil
``host.mem_used_gib``       the host's memory in use (total - available)      psutil
``host.mem_total_gib``      the host's memory, GiB                            psutil
==========================  ===============================================  ============

``N`` is NVML's index of the device (the machine's numbering, as ``nvidia-smi`` shows it).
Where ``CUDA_VISIBLE_DEVICES`` lists indices or ``GPU-`` UUIDs, only those devices are
sampled (NVML itself sees every GPU of the machine). A metric a device does not support
is left out.

Optional dependencies (the ``system`` extra: ``psutil`` and ``nvidia-ml-py``) are imported
on the sampler thread, on first use. What is missing is said in **one** line on the
``cs336_basics`` logger (INFO, or WARNING when sampling was asked for explicitly): on a
machine without NVML or without a GPU, samples hold CPU and memory only; without psutil,
GPUs only; with neither, the sampler stops. A source that fails later (a GPU lost) is
reported once and left out from then on; nothing ever raises into the training loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from ..core import env
from ..core.row import MetricsSnapshot
from ..core.values import wrap_float
from ..store.journal import encode_record, read_samples, system_record

logger = logging.getLogger("cs336_basics")

#: Seconds between two samples when neither ``system_interval`` nor the environment says.
DEFAULT_INTERVAL = 10.0
GIB = float(1 << 30)
INSTALL_HINT = "pip install 'cs336-basics[system]'"

Sample = dict[str, float]


class ProcessProbe:
    """The process's CPU and memory, and the host's (psutil)."""

    def __init__(self, psutil: Any) -> None:
        self.psutil = psutil
        self.process = psutil.Process()
        self.process.cpu_percent(None)  # the first call only starts the measurement
        psutil.cpu_percent(None)

    def sample(self) -> Sample:
        psutil, process = self.psutil, self.process
        out: Sample = {}
        with process.oneshot():
            out["proc.cpu_percent"] = float(process.cpu_percent(None))
            out["proc.rss_gib"] = process.memory_info().rss / GIB
        out["host.cpu_percent"] = float(psutil.cpu_percent(None))
        memory = psutil.virtual_memory()
        out["host.mem_used_gib"] = (memory.total - memory.available) / GIB
        out["host.mem_total_gib"] = memory.total / GIB
        return out


def visible_devices(
    count: int, handles: Callable[[int], Any], uuid_of: Callable[[Any], str]
) -> list[int]:
    """The NVML indices ``CUDA_VISIBLE_DEVICES`` selects (all ``count`` when unset, or when it
    names devices in a form this does not read, such as MIG instances)."""
    value = os.environ.get(env.CUDA_VISIBLE_DEVICES)
    everything = list(range(count))
    if value is None or not value.strip():
        return everything
    chosen: list[int] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        if item.isdigit() or (item.startswith("-") and item[1:].isdigit()):
            index = int(item)
            if not 0 <= index < count:
                break  # CUDA stops at the first invalid entry
            chosen.append(index)
        elif item.startswith("GPU-"):
            match = [i for i in everything if uuid_of(handles(i)).startswith(item)]
            if len(match) != 1:
                break
            chosen.append(match[0])
        else:
            return everything
    return list(dict.fromkeys(chosen))


class NvmlProbe:
    """Per-GPU utilisation, memory, power and temperature through NVML (nvidia-ml-py)."""

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        nvml.nvmlInit()
        try:
            count = int(nvml.nvmlDeviceGetCount())
            indices = visible_devices(
                count, nvml.nvmlDeviceGetHandleByIndex, lambda h: _text(nvml.nvmlDeviceGetUUID(h))
            )
            self.devices = [(i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in indices]
        except BaseException:
            with contextlib.suppress(Exception):
                nvml.nvmlShutdown()
            raise
        self.unsupported: set[tuple[int, str]] = set()
        self.failed: set[int] = set()

    def _read(self, index: int, what: str, read: Callable[[], Any], out: Sample) -> None:
        if (index, what) in self.unsupported:
            return
        try:
            read_value = read()
        except self.nvml.NVMLError as exc:
            if _not_supported(self.nvml, exc):
                self.unsupported.add((index, what))
                return
            raise
        if isinstance(read_value, dict):
            out.update(read_value)

    def sample(self) -> Sample:
        nvml = self.nvml
        out: Sample = {}
        for index, handle in self.devices:
            if index in self.failed:
                continue
            tag = f"gpu.{index}."

            def utilisation(h: Any = handle, t: str = tag) -> Sample:
                rates = nvml.nvmlDeviceGetUtilizationRates(h)
                return {f"{t}util": float(rates.gpu), f"{t}mem_util": float(rates.memory)}

            def memory(h: Any = handle, t: str = tag) -> Sample:
                info = nvml.nvmlDeviceGetMemoryInfo(h)
                return {f"{t}mem_used_gib": info.used / GIB, f"{t}mem_total_gib": info.total / GIB}

            def power(h: Any = handle, t: str = tag) -> Sample:
                return {f"{t}power_w": nvml.nvmlDeviceGetPowerUsage(h) / 1000.0}

            def temperature(h: Any = handle, t: str = tag) -> Sample:
                celsius = nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)
                return {f"{t}temp_c": float(celsius)}

            try:
                for what, read in (
                    ("util", utilisation),
                    ("memory", memory),
                    ("power", power),
                    ("temperature", temperature),
                ):
                    self._read(index, what, read, out)
            except nvml.NVMLError as exc:
                self.failed.add(index)
                logger.warning(
                    "system metrics: GPU %d cannot be read any more (%s); it is left out",
                    index,
                    exc,
                )
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.nvml.nvmlShutdown()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _not_supported(nvml: Any, exc: Exception) -> bool:
    kind = getattr(nvml, "NVMLError_NotSupported", None)
    if kind is not None and isinstance(exc, kind):
        return True
    return getattr(exc, "value", None) == getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", 3)


def open_probes(explicit: bool) -> tuple[list[Any], str | None]:
    """The probes this machine offers, and the one line that says what is missing (None
    when nothing is). Imports psutil and nvidia-ml-py (``pynvml``) here, lazily."""
    probes: list[Any] = []
    missing: list[str] = []
    try:
        import psutil
    except ImportError:
        missing.append(f"psutil is not installed ({INSTALL_HINT}): no CPU or memory metrics")
    else:
        try:
            probes.append(ProcessProbe(psutil))
        except Exception as exc:  # (a sandbox denying /proc, say)
            missing.append(f"psutil cannot read this process ({exc}): no CPU or memory metrics")
    try:
        import pynvml
    except ImportError:
        missing.append(f"nvidia-ml-py is not installed ({INSTALL_HINT}): no GPU metrics")
    else:
        try:
            gpus = NvmlProbe(pynvml)
        except Exception as exc:
            reason = str(exc).strip() or type(exc).__name__
            missing.append(f"NVML is not available ({reason}): no GPU metrics")
        else:
            if gpus.devices:
                probes.append(gpus)
            else:
                gpus.close()
                missing.append("no GPU found (NVML sees none): no GPU metrics")
    if not missing:
        return probes, None
    what = "; ".join(missing)
    if not probes:
        return probes, f"system metrics are off: {what}"
    kept = "GPU metrics only" if isinstance(probes[0], NvmlProbe) else "CPU and memory only"
    return probes, f"system metrics: {what}; recording {kept}"


class SystemSampler:
    """Samples every ``interval`` seconds on a thread of its own and calls
    ``on_sample(values)`` with each sample (never raises into anything; see the module
    docstring). ``explicit``: sampling was asked for (a missing source is then a warning,
    else an INFO line). ``probes``: the sources to read, instead of :func:`open_probes`
    (tests)."""

    def __init__(
        self,
        interval: float,
        on_sample: Callable[[Sample], None],
        *,
        explicit: bool = False,
        probes: list[Any] | None = None,
        name: str = "cs336-system",
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval: expected seconds > 0, got {interval!r}")
        self.interval = float(interval)
        self.on_sample = on_sample
        self.explicit = explicit
        self.samples = 0
        self.sources: list[str] = []
        self.note: str | None = None
        self._probes = probes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._failures: set[str] = set()

    def start(self) -> SystemSampler:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            probes = self._probes
            if probes is None:
                probes, note = open_probes(self.explicit)
                self.note = note
                if note is not None:
                    logger.log(logging.WARNING if self.explicit else logging.INFO, "%s", note)
            self.sources = [type(p).__name__ for p in probes]
            if not probes:
                return
            try:
                self._loop(probes)
            finally:
                for probe in probes:
                    close = getattr(probe, "close", None)
                    if close is not None:
                        with contextlib.suppress(Exception):
                            close()
        except Exception:  # a bug: reported, never raised into anything
            logger.exception("system metrics: the sampler stopped")

    def _loop(self, probes: list[Any]) -> None:
        next_at = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at += self.interval
            now = time.monotonic()
            if next_at < now:  # suspended or starved: skip what was missed
                next_at = now + self.interval
            values: Sample = {}
            for probe in probes:
                try:
                    values.update(probe.sample())
                except Exception as exc:
                    self._failed(type(probe).__name__, exc)
            if not values:
                continue
            try:
                self.on_sample(values)
                self.samples += 1
            except Exception as exc:
                self._failed("recording a sample", exc)

    def _failed(self, what: str, exc: Exception) -> None:
        if what not in self._failures:
            self._failures.add(what)
            logger.warning("system metrics: %s failed (%s: %s)", what, type(exc).__name__, exc)

    def close(self, timeout: float = 5.0) -> None:
        """Stop sampling (a sample being taken is finished first)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)


class RankSamplesFile:
    """Another rank's samples, appended to its own file of rank 0's run
    (``RunFiles.rank_system``; the format is the journal's: a header, then ``s`` records).
    One line per sample, written by the sampler thread; a file that exists (a job resumed)
    is continued: numbers and clock go on from its last sample."""

    def __init__(self, path: Any, header: bytes) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._next = 0
        self._offset = 0.0
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError:
            data = b""
        if data.strip():
            rows, _ = read_samples(data, str(path))
            if rows:
                self._next = rows[-1].iteration + 1
                self._offset = float(rows[-1].wallclock_time)
        else:
            os.write(self._fd, header)
        self._t0 = time.perf_counter()

    def write(self, gradient_step: int, values: Sample) -> None:
        wall = self._offset + time.perf_counter() - self._t0
        numbers = {name: wrap_float(float(value)) for name, value in values.items()}
        row = MetricsSnapshot(self._next, gradient_step, wall, extra=numbers)
        os.write(self._fd, encode_record(system_record(row)))
        self._next += 1

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
