"""Peak-memory helpers prepended to the PyTorch side of the step benchmarks (resnet50_step.py, minilm_step.py,
whisper_step.py) by `suite bench`, so that all three measure memory as suite's `RssWatch` does."""


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


