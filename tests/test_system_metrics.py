"""System metrics (runtime.system_metrics): sampled off the training thread, stored as a
series of their own, replayed by the loader, continued on resume, one line when NVML or a
GPU is absent; the GPU path against a fake ``pynvml`` (nvidia-ml-py's API)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
from helpers import need, requires, simulate_death

from cs336_basics import ExperimentConfig, ExperimentTracker, InMemorySink, load_experiment_log
from cs336_basics.runtime import system_metrics
from cs336_basics.runtime.system_metrics import NvmlProbe, SystemSampler, open_probes

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "training_together.py"
GIB = 1 << 30


def fake_nvml(count: int = 2, no_power: tuple[int, ...] = (), broken: bool = False) -> Any:
    """A stand-in for nvidia-ml-py's ``pynvml`` with ``count`` GPUs (the calls the sampler
    makes, as nvidia-ml-py defines them)."""
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        def __init__(self, value: int) -> None:
            super().__init__(f"NVML error {value}")
            self.value = value

    class NVMLError_NotSupported(NVMLError):  # noqa: N801 (nvidia-ml-py's name)
        def __init__(self) -> None:
            super().__init__(3)

    class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801
        def __init__(self) -> None:
            super().__init__(12)

    nvml.NVMLError = NVMLError
    nvml.NVMLError_NotSupported = NVMLError_NotSupported
    nvml.NVML_ERROR_NOT_SUPPORTED = 3
    nvml.NVML_TEMPERATURE_GPU = 0
    nvml.calls = []

    def init() -> None:
        nvml.calls.append("init")
        if broken:
            raise NVMLError_LibraryNotFound()

    nvml.nvmlInit = init
    nvml.nvmlShutdown = lambda: nvml.calls.append("shutdown")
    nvml.nvmlDeviceGetCount = lambda: count
    nvml.nvmlDeviceGetHandleByIndex = lambda i: ("handle", i)
    nvml.nvmlDeviceGetUUID = lambda h: f"GPU-{h[1]:04d}-abcd"
    nvml.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(
        gpu=50 + h[1], memory=20 + h[1]
    )
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(
        used=(h[1] + 1) * GIB, total=80 * GIB, free=(79 - h[1]) * GIB
    )

    def power(h: Any) -> int:
        if h[1] in no_power:
            raise NVMLError_NotSupported()
        return 300_000 + h[1]  # milliwatts

    nvml.nvmlDeviceGetPowerUsage = power
    nvml.nvmlDeviceGetTemperature = lambda h, sensor: 60 + h[1]
    return nvml


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> Any:
    fake = fake_nvml(2, no_power=(1,))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return fake


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------
# Sources.


def test_gpu_probe_reads_nvml(nvml: Any) -> None:
    probe = NvmlProbe(nvml)
    first = probe.sample()
    assert first == {
        "gpu.0.util": 50.0,
        "gpu.0.mem_util": 20.0,
        "gpu.0.mem_used_gib": 1.0,
        "gpu.0.mem_total_gib": 80.0,
        "gpu.0.power_w": 300.0,
        "gpu.0.temp_c": 60.0,
        "gpu.1.util": 51.0,
        "gpu.1.mem_util": 21.0,
        "gpu.1.mem_used_gib": 2.0,
        "gpu.1.mem_total_gib": 80.0,
        "gpu.1.temp_c": 61.0,  # (no power reading on GPU 1: left out)
    }
    assert probe.sample() == first
    probe.close()
    assert nvml.calls == ["init", "shutdown"]


def test_cuda_visible_devices_selects_gpus(nvml: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(4))
    nvml4 = sys.modules["pynvml"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    assert [i for i, _ in NvmlProbe(nvml4).devices] == [2, 0]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-0003")
    assert [i for i, _ in NvmlProbe(nvml4).devices] == [3]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,7,2")  # CUDA stops at an invalid entry
    assert [i for i, _ in NvmlProbe(nvml4).devices] == [1]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-GPU-abc/1/0")  # not read: all
    assert len(NvmlProbe(nvml4).devices) == 4


@requires("psutil")
def test_probes_and_the_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(broken=True))
    probes, note = open_probes(explicit=False)
    assert [type(p).__name__ for p in probes] == ["ProcessProbe"]
    assert note is not None and "\n" not in note
    assert "NVML is not available" in note and "recording CPU and memory only" in note
    sample = probes[0].sample()
    assert set(sample) == {
        "proc.cpu_percent",
        "proc.rss_gib",
        "host.cpu_percent",
        "host.mem_used_gib",
        "host.mem_total_gib",
    }
    assert 0 < sample["proc.rss_gib"] < sample["host.mem_total_gib"]
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(count=0))
    assert "no GPU found" in (open_probes(explicit=False)[1] or "")
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(count=1))
    probes, note = open_probes(explicit=False)
    assert note is None and len(probes) == 2
    monkeypatch.setitem(sys.modules, "psutil", None)  # the system extra missing
    probes, note = open_probes(explicit=False)
    assert [type(p).__name__ for p in probes] == ["NvmlProbe"]
    assert "psutil is not installed (pip install 'cs336-basics[system]')" in (note or "")
    monkeypatch.setitem(sys.modules, "pynvml", None)
    probes, note = open_probes(explicit=True)
    assert probes == [] and (note or "").startswith("system metrics are off: psutil")


def test_sampler_without_any_source_says_so_once_and_stops(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "psutil", None)
    monkeypatch.setitem(sys.modules, "pynvml", None)
    caplog.set_level(logging.INFO, logger="cs336_basics")
    samples: list[Any] = []
    sampler = SystemSampler(0.01, samples.append).start()
    wait_for(lambda: not sampler.running)
    assert samples == []
    assert [r.getMessage()[:24] for r in caplog.records] == ["system metrics are off: "]
    assert caplog.records[0].levelno == logging.INFO  # not asked for: no warning


def test_a_failing_source_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    class Flaky:
        def sample(self) -> dict[str, float]:
            raise OSError("gone")

    class Steady:
        def sample(self) -> dict[str, float]:
            return {"x": 1.0}

    samples: list[Any] = []
    sampler = SystemSampler(0.01, samples.append, probes=[Flaky(), Steady()]).start()
    wait_for(lambda: len(samples) >= 5)
    sampler.close()
    assert samples[0] == {"x": 1.0}
    assert sum("Flaky failed" in r.getMessage() for r in caplog.records) == 1


# ---------------------------------------------------------------------------------------
# In a run.


@requires("psutil")
def test_samples_are_a_series_of_their_own(tmp_path: Path, nvml: Any) -> None:
    sink = InMemorySink()
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="sys"),
        log_dir=tmp_path,
        sinks=[sink],
        system_interval=0.05,
    )
    tracker.start()
    for i in range(5):
        tracker.log_metrics(iteration=i, train_loss=3.0)
        tracker.increment_gradient_step()
    wait_for(lambda: len(tracker.log.system_history) >= 3)
    tracker.finish()
    log = load_experiment_log(tracker.path)
    samples = log.system_history
    assert len(samples) >= 3 and tracker.health()["system_samples"] == len(samples)
    assert [s.iteration for s in samples] == list(range(len(samples)))
    assert all(s.gradient_step == 5 for s in samples)  # optimizer steps done when sampled
    times = [s.wallclock_time for s in samples]
    assert times == sorted(times) and times[0] > 0
    first = samples[0]
    assert first.train_loss is None and first.extra is not None
    assert first.extra["gpu.0.util"] == 50.0 and first.extra["gpu.1.temp_c"] == 61.0
    assert "gpu.1.power_w" not in first.extra and first.extra["gpu.0.power_w"] == 300.0
    assert first.extra["proc.rss_gib"] > 0 and first.extra["host.mem_total_gib"] > 0
    # not mixed into the training rows
    assert len(log.metrics_history) == 5
    assert all(not (r.extra or {}) for r in log.metrics_history)
    document = json.loads(tracker.path.read_text())
    assert len(document["system_history"]) == len(samples)
    assert document["system_history"][0]["extra"]["gpu.0.util"] == 50.0
    assert set(document) >= {"metrics_history", "alerts", "compute", "system_history"}
    assert len(sink.system) == len(samples) and sink.system[0]["gpu.0.util"] == 50.0
    # the columnar cache holds them too, and a second load reads them from there
    again = load_experiment_log(tracker.path)
    assert again.system_history == samples
    assert list(log.axis_values("wallclock", log.system_history)) == times
    pandas = need("pandas")
    frame = log.system_to_pandas()
    assert list(frame.columns[:3]) == ["sample", "gradient_step", "wallclock_time"]
    assert {"gpu.0.util", "proc.rss_gib"} <= set(frame.columns) and len(frame) == len(samples)
    assert frame["gpu.0.util"][0] == 50.0 and "gpu.1.power_w" not in frame
    assert not pandas.isna(frame["proc.rss_gib"]).any()
    assert "nvmlShutdown" not in nvml.calls and nvml.calls.count("shutdown") == 1


def test_samples_survive_a_crash_and_a_resume_continues_them(tmp_path: Path, nvml: Any) -> None:
    config = ExperimentConfig(experiment_name="resume")
    tracker = ExperimentTracker(config, log_dir=tmp_path, system_interval=0.03)
    tracker.log_metrics(iteration=0, train_loss=3.0)
    wait_for(lambda: len(tracker.log.system_history) >= 2)
    tracker.save(wait=True)
    wait_for(lambda: len(tracker.log.system_history) >= 4)
    tracker._stop_sampling()
    tracker.flush()
    before = list(tracker.log.system_history)
    simulate_death(tracker)
    recovered = load_experiment_log(tracker.path)
    assert recovered.system_history == before  # document + journal, each sample once
    resumed = ExperimentTracker(config, log_dir=tmp_path, resume=tracker.path, system_interval=0.03)
    resumed.start()
    wait_for(lambda: len(resumed.log.system_history) >= len(before) + 2)
    resumed.finish()
    samples = load_experiment_log(tracker.path).system_history
    assert [s.iteration for s in samples] == list(range(len(samples)))
    assert samples[: len(before)] == before
    assert samples[len(before)].wallclock_time >= before[-1].wallclock_time


def test_interval_zero_env_and_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    off = ExperimentTracker(
        ExperimentConfig(experiment_name="off"), log_dir=tmp_path, system_interval=0
    )
    off.start()
    assert off._sampler is None and off.system_interval == 0
    off.finish()
    assert len(off.log.system_history) == 0
    monkeypatch.setenv("CS336_SYSTEM_INTERVAL", "2.5")
    assert ExperimentTracker(ExperimentConfig(), log_dir=tmp_path).system_interval == 2.5
    monkeypatch.setenv("CS336_SYSTEM_INTERVAL", "0")
    assert ExperimentTracker(ExperimentConfig(), log_dir=tmp_path).system_interval == 0
    monkeypatch.delenv("CS336_SYSTEM_INTERVAL")
    assert ExperimentTracker(ExperimentConfig(), log_dir=tmp_path).system_interval == 10.0
    monkeypatch.setenv("CS336_SYSTEM_INTERVAL", "often")
    with pytest.raises(ValueError, match="CS336_SYSTEM_INTERVAL"):
        ExperimentTracker(ExperimentConfig(), log_dir=tmp_path)
    with pytest.raises(ValueError, match="system_interval"):
        ExperimentTracker(ExperimentConfig(), log_dir=tmp_path, system_interval=-1)


def test_other_ranks_sample_into_files_of_rank_zeros_run(
    tmp_path: Path, nvml: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rank0 = ExperimentTracker(
        ExperimentConfig(experiment_name="ddp"), log_dir=tmp_path, system_interval=0
    )
    rank0.start()
    monkeypatch.setenv("RANK", "1")
    rank1 = ExperimentTracker(
        ExperimentConfig(experiment_name="ddp"), log_dir=tmp_path, system_interval=0.03
    )
    assert not rank1.enabled
    rank1.start()  # nothing: rank 1 writes no run
    rank1.sample_system_for(rank0.run_id)
    rank1.increment_gradient_step(3)
    wait_for(lambda: rank1._rank_samples is not None and rank1._rank_samples._next >= 3)
    rank1.finish()
    with pytest.raises(Exception, match="call it on the other ranks"):
        rank0.sample_system_for(rank0.run_id)
    rank0.log_metrics(iteration=0, train_loss=2.0)
    rank0.finish()
    path = rank0.files.rank_system(1)
    assert path.name == f".{rank0.run_id}.system-rank1.jsonl" and path.exists()
    log = load_experiment_log(rank0.path)
    samples = log.system_by_rank[1]
    assert len(samples) >= 3 and samples[0].extra["gpu.0.util"] == 50.0
    assert [s.iteration for s in samples] == list(range(len(samples)))
    assert samples[-1].gradient_step == 3
    assert len(log.system_history) == 0  # rank 0 did not sample
    # a resumed job continues rank 1's file
    rank1b = ExperimentTracker(
        ExperimentConfig(experiment_name="ddp"), log_dir=tmp_path, system_interval=0.03
    )
    rank1b.sample_system_for(str(rank0.path))
    count = len(samples)
    wait_for(lambda: rank1b._rank_samples is not None and rank1b._rank_samples._next > count)
    rank1b.close()
    more = load_experiment_log(rank0.path).system_by_rank[1]
    assert [s.iteration for s in more] == list(range(len(more))) and len(more) > count


@requires("psutil")
def test_the_sampler_never_imports_torch(tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "from cs336_basics import ExperimentConfig, ExperimentTracker\n"
        f"t = ExperimentTracker(ExperimentConfig(), log_dir={str(tmp_path)!r}, "
        "system_interval=0.02)\n"
        "t.start()\n"
        "deadline = time.time() + 10\n"
        "while len(t.log.system_history) < 2 and time.time() < deadline: time.sleep(0.01)\n"
        "t.finish()\n"
        "print(len(t.log.system_history), 'torch' in sys.modules)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    ).stdout.split()
    assert int(out[0]) >= 2 and out[1] == "False"


# ---------------------------------------------------------------------------------------
# The example, and the W&B mirror (offline).


@pytest.mark.slow
@requires("torch", "numpy", "psutil", "wandb")  # the example, its CPU and memory, on W&B
def test_the_example_records_cpu_and_memory_locally_and_on_wandb(tmp_path: Path) -> None:
    import wandb_records as wr

    env = dict(os.environ, CS336_SYSTEM_INTERVAL="0.5")
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--max-iters",
            "150",
            "--log-interval",
            "1",
            "--eval-interval",
            "50",
            "--eval-iters",
            "2",
            "--d-model",
            "32",
            "--num-layers",
            "1",
            "--num-heads",
            "2",
            "--d-ff",
            "64",
            "--context-length",
            "32",
            "--batch-size",
            "8",
            "--no-plot",
            "--quiet",
            "--sink",
            "wandb",
            "--log-dir",
            str(tmp_path / "logs"),
            "--checkpoint-dir",
            str(tmp_path / "ckpt"),
            "--data-dir",
            str(tmp_path / "data"),
        ],  # fmt: skip
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    nvml_lines = [line for line in proc.stderr.splitlines() if "system metrics" in line]
    if system_metrics.NvmlProbe is not None and not Path("/dev/nvidia0").exists():
        assert len(nvml_lines) == 1 and "CPU and memory only" in nvml_lines[0], nvml_lines
    (path,) = (tmp_path / "logs").glob("experiment_*.json")
    log = load_experiment_log(path)
    samples = log.system_history
    assert len(samples) >= 2
    for sample in samples:
        assert sample.extra is not None
        assert {"proc.cpu_percent", "proc.rss_gib", "host.mem_used_gib"} <= set(sample.extra)
    state = log.mirrors["wandb"]
    assert state["status"] == "finished"
    rows = [r for r in wr.history(state["sync_dir"]) if "system/proc.rss_gib" in r]
    assert len(rows) == len(samples)
    for got, sample in zip(rows, samples, strict=True):
        assert float(got["wallclock_time"]) == pytest.approx(sample.wallclock_time)
        assert float(got["system/proc.rss_gib"]) == pytest.approx(sample.extra["proc.rss_gib"])
        assert "iteration" not in got and "train/loss" not in got
    metrics = [r["metric"] for r in wr.records(state["sync_dir"]) if r.get("type") == "metric"]
    assert any(m.get("glob_name") == "system/*" for m in metrics)
    # Imported back from the offline file: the samples are samples again, not rows.
    from cs336_basics import import_wandb_runs

    (back,) = import_wandb_runs(state["sync_dir"], save_dir=tmp_path / "imported")
    assert len(back.system_history) == len(samples)
    assert len(back.metrics_history) == len(log.metrics_history)
    assert back.system_history[0].extra["proc.rss_gib"] == pytest.approx(
        samples[0].extra["proc.rss_gib"]
    )


def test_saves_append_and_reuse_the_samples_bytes(tmp_path: Path) -> None:
    # Enough samples to freeze blocks of them: each save writes the samples' bytes again
    # (they come after the other fields), encoded once per block; the document must be
    # byte for byte what writing it whole gives.
    from cs336_basics.store.codec import encode_log

    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="bytes"), log_dir=tmp_path, system_interval=0
    )
    tracker.start()
    tracker._accepting = True
    for k in range(5):
        for i in range(2200):
            tracker._on_system_sample({"proc.cpu_percent": float(i % 97), "host.mem_used_gib": 1.5})
            tracker.log_metrics(iteration=k * 2200 + i, train_loss=3.0)
        tracker.save(wait=True)
        saved = tracker.path.read_bytes()
        assert saved == encode_log(tracker.log, tracker._saves.save_id)
    assert len(tracker.log.system_history.snapshot().frozen) == 1  # frozen in round 4
    assert tracker._saves.writer._system[1]  # frozen blocks' bytes kept
    tracker.finish()
    log = load_experiment_log(tracker.path)
    assert len(log.system_history) == 11000
    assert log.system_history[10999].extra == {"proc.cpu_percent": 65.0, "host.mem_used_gib": 1.5}
