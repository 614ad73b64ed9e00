"""Where do Beam's worker processes hold memory? A sampler loaded into every Python process started with
this folder on ``PYTHONPATH`` (Beam's local worker processes inherit the variable):

    RSS_TRACE_DIR=/tmp/rss PYTHONPATH=bench/rss_trace python bench/bench_scale.py --sizes 2

Each ``sdk_worker_main`` process writes ``$RSS_TRACE_DIR/rss-<pid>.log``: every 2 s its resident size
and the innermost curate frames of each thread (``sort -k2 -n -r`` shows the peaks and where they
were). Other processes are left alone; without ``RSS_TRACE_DIR`` nothing happens.
"""
import os
import sys
import threading
import time
import traceback

_DIR = os.environ.get("RSS_TRACE_DIR")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _where(me: int) -> str:
    out = []
    for tid, frame in sys._current_frames().items():
        if tid == me:
            continue
        lines = [ln.split("\n")[0].strip() for ln in traceback.format_stack(frame) if f"{os.sep}curate{os.sep}" in ln]
        if lines:
            out.append(" <- ".join(lines[-3:][::-1]))
    return " || ".join(out)[:400]


def _loop() -> None:
    for _ in range(120):  # under `python -m`, argv[0] is "-m" until the module itself runs
        time.sleep(1)
        if sys.argv and sys.argv[0] != "-m":
            break
    if "sdk_worker" not in " ".join(sys.argv):
        return
    path = os.path.join(_DIR, f"rss-{os.getpid()}.log")
    t0, me = time.time(), threading.get_ident()
    while True:
        with open(path, "a") as f:
            f.write(f"{time.time() - t0:7.1f} {_rss() / 1e6:6.0f} MB | {_where(me)}\n")
        time.sleep(2)


if _DIR:
    threading.Thread(target=_loop, daemon=True, name="rss-trace").start()
