"""Child process of the big-upload test: upload one file and report the peak RSS growth.

Run as ``python big_upload_child.py URL FILE CASE_ID``; prints one JSON line with the upload
result and how far the resident set grew during the upload: the largest of a sampler
thread's readings (every 5 ms) and of the kernel's peak (``ru_maxrss``), each against its
value just before the upload.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
from pathlib import Path

import psutil
from pydantic import SecretStr

from creatio_attach.config import CreatioSettings
from creatio_attach.creatio import CreatioClient, RetryPolicy, Target


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


class Sampler(threading.Thread):
    """Reads this process's RSS until stopped; ``peak`` is the largest reading."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)


def main() -> None:
    url, path, case_id = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    settings = CreatioSettings(
        url=url, username="Supervisor", password=SecretStr("Supervisor"), timeout=60
    )
    with CreatioClient(settings, retry=RetryPolicy(backoff_base=0.01)) as client:
        client.login()  # imports, login and $metadata are part of the baseline
        peak_before = peak_rss_bytes()
        rss_before = psutil.Process().memory_info().rss
        sampler = Sampler()
        sampler.start()
        result = client.upload(path, Target.for_file_object("CaseFile", case_id))
        sampler.stop.set()
        sampler.join()
        growth = max(sampler.peak - rss_before, peak_rss_bytes() - peak_before)
    print(
        json.dumps(
            {
                "record_id": result.record_id,
                "sha256": result.sha256,
                "bytes": result.bytes,
                "chunked": result.chunked,
                "rss_growth": growth,
            }
        )
    )


if __name__ == "__main__":
    main()
