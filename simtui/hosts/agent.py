#!/usr/bin/env python3
"""simtui's resource agent: runs ON a host and prints one JSON line per interval.

Stdlib only (Python >= 3.6) so that any Linux host with python3 runs it;
NVIDIA's pure-Python ``pynvml.py``, shipped beside it, is optional. The first
line is ``{"facts": {...}}`` (simtui.model.HostFacts), then one
``{"sample": {...}}`` (simtui.model.Sample) per interval, read from /proc in
this one process. It exits when stdin reaches EOF (the connection closed) or
stdout breaks, so it never outlives its connection. A crash is reported as
``{"error": "..."}``.

simtui also imports this module to read the local machine's facts and GPUs.
"""

import argparse
import csv
import functools
import json
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

try:
    import pynvml
except Exception:  # not shipped, or unusable here: GPUs through nvidia-smi, else none
    pynvml = None

MIB = 1024 * 1024
NVML_TEMPERATURE_GPU = getattr(pynvml, "NVML_TEMPERATURE_GPU", 0)
FIRST_DELTA = 0.2  # seconds: the first sample's CPU % covers at most this long
BOOTTIME = getattr(time, "CLOCK_BOOTTIME", 7)  # Linux's; named in Python 3.7+
SMI_GPU_FIELDS = "index,name,uuid,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw"
SMI_APP_FIELDS = "gpu_uuid,pid,used_memory"


# -- schedule and output ----------------------------------------------------


def until_next_tick(interval, now, last):
    """Seconds to the next multiple of ``interval`` on the wall clock, so that
    hosts with synchronised clocks sample at the same moments; a tick less than
    half an interval after the ``last`` reading is skipped."""
    delay = interval - now % interval
    return delay + interval if now + delay - last < interval / 2 else delay


def emit(record):
    """One JSON line on stdout, in one write (no buffer to flush)."""
    line = memoryview((json.dumps(record, separators=(",", ":")) + "\n").encode())
    while line:
        line = line[os.write(1, line):]


def exit_at_eof():
    """Block on stdin and end the process when it closes: the caller is gone."""
    while os.read(0, 65536):
        pass
    os._exit(0)


# -- CPU, memory, disk from /proc -------------------------------------------

MEMINFO_KEYS = re.compile(rb"^(MemTotal|MemFree|MemAvailable|Buffers|Cached|SwapTotal|SwapFree):\s+(\d+)", re.M)


def busy_percent(before, after):
    """Busy % between two (busy, total) CPU time readings."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return round(100.0 * busy / total, 1) if total > 0 else None


def expanded(path):
    """``path`` with ``~`` expanded, absolute."""
    return os.path.abspath(os.path.expanduser(path))


def existing_dir(path):
    """``path`` (expanded), or its nearest existing parent."""
    while not os.path.isdir(path):
        path = os.path.dirname(path)
    return path


class ProcSampler:
    """Samples of this Linux host from /proc. The files stay open and are read
    again from their start (pread): no open() per sample; CPU % is measured
    between one sample and the next. What does not change between samples is
    worked out once: the disk path expanded, the cores' order; the uptime is a
    clock (vDSO), not a file."""

    def __init__(self, disk, gpus):
        self.disk, self.gpus = expanded(disk), gpus
        self.files = {name: os.open("/proc/" + name, os.O_RDONLY) for name in ("stat", "meminfo", "loadavg")}
        self.names, self.cores = (), []
        self.before = self.cpu_times()

    def read(self, name):
        return os.pread(self.files[name], 65536, 0)  # the cpu lines lead /proc/stat: enough of it

    def cpu_times(self):
        """{b"cpu": (busy, total), b"cpu0": (busy, total), ...} in jiffies."""
        times = {}
        for line in self.read("stat").split(b"\n"):
            if not line.startswith(b"cpu"):
                break
            fields = line.split()
            ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
            total = sum(ticks)
            times[fields[0]] = (total - ticks[3] - ticks[4], total)
        return times

    def core_names(self, before, after):
        """The cores in both readings, in number order (sorted again only when the
        cores /proc/stat lists change: CPUs taken offline or brought back)."""
        names = tuple(after)
        if names != self.names:
            self.names = names
            self.cores = sorted((n for n in names if n != b"cpu"), key=lambda n: int(n[3:]))
        return [n for n in self.cores if n in before]

    def sample(self):
        now = time.time()
        before, after = self.before, self.cpu_times()
        self.before = after
        cores = self.core_names(before, after)
        mem = {key.decode(): int(kib) * 1024 for key, kib in MEMINFO_KEYS.findall(self.read("meminfo"))}
        available = mem.get("MemAvailable", mem["MemFree"] + mem.get("Buffers", 0) + mem.get("Cached", 0))
        disk_path = existing_dir(self.disk)  # follows the jobs dir once it is created
        fs = os.statvfs(disk_path)
        return {
            "time": now,
            "cpu_percent": busy_percent(before[b"cpu"], after[b"cpu"]),
            "cpu_per_core": [busy_percent(before[n], after[n]) for n in cores],
            "cpu_count": len(cores),
            "load": [float(v) for v in self.read("loadavg").split()[:3]],
            "mem_total": mem["MemTotal"],
            "mem_used": mem["MemTotal"] - available,
            "mem_available": available,
            "swap_total": mem.get("SwapTotal"),
            "swap_used": mem.get("SwapTotal", 0) - mem.get("SwapFree", 0),
            "disk_path": disk_path,
            "disk_total": fs.f_blocks * fs.f_frsize,
            "disk_free": fs.f_bavail * fs.f_frsize,
            "uptime": time.clock_gettime(BOOTTIME),  # /proc/uptime's clock, without a read
            "gpus": self.gpus.read(),
        }


# -- facts -------------------------------------------------------------------


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def os_name():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key == "PRETTY_NAME":
                    return value.strip("\"'")
    except OSError:
        pass
    return platform.system() or None


def host_facts(gpus):
    facts = {
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "os": os_name(),
        "kernel": platform.release() or None,
        "python": platform.python_version(),
    }
    facts.update(gpus.facts())
    return facts


# -- GPUs ----------------------------------------------------------------------


def nvml(name, *args):
    """``pynvml.<name>(*args)``, or None when there is no pynvml, no driver, no
    such call in this pynvml, or no value. Every NVML call goes through here."""
    try:
        return getattr(pynvml, name)(*args)
    except Exception:
        return None


def text(value):
    """NVML strings are bytes in older pynvml releases."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def number(value):
    """A number from NVML or nvidia-smi; None for "[N/A]", "[Not Supported]" and the like."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def mib(value):
    value = number(value)
    return None if value is None else int(value * MIB)


def cuda_version(code):
    """NVML's CUDA driver version 12040 -> "12.4"."""
    return None if code is None else "%d.%d" % (code // 1000, code % 1000 // 10)


def gpu_process(pid, used_mem):
    """A process holding GPU memory, with its owner and name where /proc shows them."""
    user = name = None
    try:
        user = user_name(os.stat("/proc/%d" % pid).st_uid)
        with open("/proc/%d/comm" % pid) as f:
            name = f.read().strip()
    except (OSError, KeyError):
        pass  # gone, or in another PID namespace
    return {"pid": pid, "user": user, "used_mem": used_mem, "name": name}


@functools.lru_cache(maxsize=None)  # the passwd database is read once per user, not per sample
def user_name(uid):
    return pwd.getpwuid(uid).pw_name


def nvml_identity(index, handle):
    """What NVML says of a GPU that does not change: asked once."""
    return {"index": index, "name": text(nvml("nvmlDeviceGetName", handle)),
            "uuid": text(nvml("nvmlDeviceGetUUID", handle))}


def nvml_device(handle, identity):
    """The raw NVML readings of one GPU now, with its identity (JSON-able: tests
    keep them as fixtures)."""
    util = nvml("nvmlDeviceGetUtilizationRates", handle)
    memory = nvml("nvmlDeviceGetMemoryInfo", handle)
    processes = []
    for call in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        for proc in nvml(call, handle) or ():
            processes.append({"pid": proc.pid, "usedGpuMemory": getattr(proc, "usedGpuMemory", None)})
    return dict(
        identity,
        utilization_gpu=getattr(util, "gpu", None),
        memory_used=getattr(memory, "used", None),
        memory_total=getattr(memory, "total", None),
        temperature=nvml("nvmlDeviceGetTemperature", handle, NVML_TEMPERATURE_GPU),
        power_mw=nvml("nvmlDeviceGetPowerUsage", handle),
        processes=processes,
    )


def gpus_from_nvml(devices):
    """Raw NVML readings (nvml_device) -> GPU sample dicts."""
    gpus = []
    for dev in devices:
        power = number(dev["power_mw"])
        seen = set()
        processes = []
        for proc in dev["processes"]:
            if proc["pid"] not in seen:  # a process can be both compute and graphics
                seen.add(proc["pid"])
                processes.append(gpu_process(proc["pid"], proc["usedGpuMemory"]))
        gpus.append({
            "index": dev["index"],
            "name": dev["name"] or "GPU %d" % dev["index"],
            "uuid": dev["uuid"],
            "util": number(dev["utilization_gpu"]),
            "mem_used": dev["memory_used"],
            "mem_total": dev["memory_total"],
            "temperature": number(dev["temperature"]),
            "power": None if power is None else power / 1000,
            "processes": processes,
        })
    return gpus


def csv_rows(output):
    return [[cell.strip() for cell in row] for row in csv.reader(output.splitlines()) if row]


def gpus_from_smi(gpu_csv, apps_csv):
    """``nvidia-smi --query-gpu=SMI_GPU_FIELDS`` and ``--query-compute-apps=SMI_APP_FIELDS``
    output (``--format=csv,noheader,nounits``: MiB, watts) -> GPU sample dicts."""
    apps = {}
    for row in csv_rows(apps_csv):
        if len(row) == 3 and row[1].isdigit():
            uuid, pid, used = row
            apps.setdefault(uuid, []).append(gpu_process(int(pid), mib(used)))
    gpus = []
    for row in csv_rows(gpu_csv):
        if len(row) != 8 or not row[0].isdigit():
            continue  # an error message instead of a row
        index, name, uuid, util, used, total, temperature, power = row
        gpus.append({
            "index": int(index),
            "name": name,
            "uuid": uuid if uuid.startswith("GPU-") else None,
            "util": number(util),
            "mem_used": mib(used),
            "mem_total": mib(total),
            "temperature": number(temperature),
            "power": number(power),
            "processes": apps.get(uuid, []),
        })
    return gpus


def smi_facts(banner):
    """Driver and CUDA versions from the banner of a plain ``nvidia-smi``."""
    driver = re.search(r"Driver Version:\s*([\w.-]+)", banner or "")
    cuda = re.search(r"CUDA Version:\s*([\w.-]+)", banner or "")
    return {"gpu_driver": driver and driver.group(1), "cuda": cuda and cuda.group(1)}


class NvmlGpus:
    """GPUs read in-process through NVML (started once, by open_gpus): no new
    process per sample; each GPU's handle and identity are asked once."""

    def __init__(self, count):
        self.devices = []
        for index in range(count):
            handle = nvml("nvmlDeviceGetHandleByIndex", index)
            self.devices.append((handle, nvml_identity(index, handle)))

    def facts(self):
        return {
            "gpu_driver": text(nvml("nvmlSystemGetDriverVersion")),
            "cuda": cuda_version(nvml("nvmlSystemGetCudaDriverVersion_v2") or nvml("nvmlSystemGetCudaDriverVersion")),
        }

    def read(self):
        return gpus_from_nvml([nvml_device(handle, identity) for handle, identity in self.devices])


class SmiGpus:
    """GPUs through the nvidia-smi command: two processes per sample (the fallback)."""

    def __init__(self, command):
        self.command = command

    def run(self, *args):
        try:
            return subprocess.run(
                [self.command] + list(args), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                universal_newlines=True, timeout=10,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    def facts(self):
        return smi_facts(self.run())

    def read(self):
        return gpus_from_smi(
            self.run("--query-gpu=" + SMI_GPU_FIELDS, "--format=csv,noheader,nounits"),
            self.run("--query-compute-apps=" + SMI_APP_FIELDS, "--format=csv,noheader,nounits"),
        )


class NoGpus:
    def facts(self):
        return {"gpu_driver": None, "cuda": None}

    def read(self):
        return []


def open_gpus():
    """This host's GPUs: through NVML, else nvidia-smi, else none."""
    nvml("nvmlInit")
    count = nvml("nvmlDeviceGetCount")  # None: NVML did not start
    if count is not None:
        return NvmlGpus(count)
    smi = shutil.which("nvidia-smi")
    return SmiGpus(smi) if smi else NoGpus()


# -- main ----------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description="Print this host's resources as JSON lines.")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between samples")
    parser.add_argument("--disk", default="~", help="the directory whose disk to report")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # a closed connection ends us at the next write
    threading.Thread(target=exit_at_eof, daemon=True).start()
    try:
        gpus = open_gpus()
        emit({"facts": host_facts(gpus)})
        sampler = ProcSampler(args.disk, gpus)
        time.sleep(min(args.interval, FIRST_DELTA))
        while True:
            reading = sampler.sample()
            emit({"sample": reading})
            time.sleep(until_next_tick(args.interval, time.time(), reading["time"]))
    except BrokenPipeError:
        os._exit(0)
    except Exception as err:
        emit({"error": "%s: %s" % (type(err).__name__, err)})
        return 1


if __name__ == "__main__":
    sys.exit(main())
