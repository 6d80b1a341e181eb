"""Helpers prepended to the PyTorch side of the step benchmarks (resnet50_step.py, minilm_step.py, whisper_step.py)
by `suite bench`: peak memory measured as suite's `RssWatch` does, and `--profile` run as suite's side runs it."""


def status_mib(key):
    """A /proc/self/status memory line (VmRSS: resident now, VmHWM: its high-water mark) in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start_rss_watch():
    """Resets the high-water mark to the resident set now (Linux clear_refs 5, where allowed) and returns VmRSS:
    peak_rss_mib is then VmHWM after the timed steps minus this, the peak this side's model and steps added."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return status_mib("VmRSS")




def profile_steps(step, path, steps, cuda):
    """`suite bench … --profile`: after the timed steps, `steps` more under torch.profiler (CPU operator events, and
    CUDA kernels on a GPU), as suite's side records them with libtorch's profiler; the Chrome trace goes to `path`."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
    prof.export_chrome_trace(path)
