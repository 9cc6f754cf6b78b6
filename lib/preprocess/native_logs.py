"""Keep mediapipe's native log noise off the console.

mediapipe's C++ graphs (absl logging, TensorFlow Lite) write informational lines
straight to file descriptor 2 when they start, some of them later from their own
threads: "INFO: Created TensorFlow Lite XNNPACK delegate", "WARNING: All log messages
before absl::InitializeLog()...", "W0000 ... inference_feedback_manager.cc:114]
Feedback manager requires...", and protobuf adds a Python deprecation warning. None
of them is actionable and neither environment variables (GLOG_minloglevel,
TF_CPP_MIN_LOG_LEVEL) nor absl's Python logging reach them. So descriptor 2 is routed
through a pipe whose reader drops exactly those lines and passes every other line on;
Python's own sys.stderr keeps writing to the terminal directly (tracebacks, tqdm and
error lines are untouched and keep their order).
"""
from __future__ import annotations

import os
import re
import sys
import threading
import warnings

NOISE = re.compile(
    rb"^(INFO: Created TensorFlow Lite XNNPACK delegate"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|[IW]\d{4} [\d:.]+ +\d+ [\w./-]+:\d+\] )"
)
"""Native lines dropped: TFLite's delegate note, absl's pre-init notice, and absl /
glog lines of level INFO (I) or WARNING (W); errors (E, F) pass."""

_started = False


def quiet_native_logs() -> None:
    """Filter descriptor 2 from now on (idempotent; call before mediapipe starts)."""
    global _started
    if _started:
        return
    _started = True
    warnings.filterwarnings("ignore", message=r"SymbolDatabase\.GetPrototype\(\) is deprecated", category=UserWarning)
    try:
        python_on_fd2 = sys.stderr is not None and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # replaced by an in-memory stream
        python_on_fd2 = False
    if python_on_fd2:
        sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    if python_on_fd2:
        sys.stderr = os.fdopen(os.dup(original), "w", buffering=1, encoding=sys.stderr.encoding,
                               errors=sys.stderr.errors)
    threading.Thread(target=_forward, args=(read_end, original), daemon=True, name="native-log-filter").start()


def _forward(read_end: int, target: int) -> None:
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        pending = b""
        while chunk := pipe.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not NOISE.match(line):
                    os.write(target, line + b"\n")
        if pending and not NOISE.match(pending):
            os.write(target, pending)
