"""What a model's status says of its download (`status.download`), from what its pods' `fetch` answered: pure, so it
is tested without a cluster. `downloads.DownloadWatch` asks the pods; `reconcile` settles the download once the
model is ready and turns a failure into `Degraded`/`DownloadFailed`.

Every field is always present (0 or "" when unknown): the status is written as a merge patch, which would keep a
field that a later report left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from vif.operator.reasons import Reason

FIELDS: dict[str, Any] = {"phase": "Pending", "bytesDone": 0, "bytesTotal": 0, "bytesPerSecond": 0,
                          "secondsLeft": 0, "message": ""}  # fmt: skip
ORDER = {"Failed": 0, "Downloading": 1, "Verifying": 2, "Pending": 3, "Ready": 4}  # which pod's answer to report


def report(answers: Iterable[dict[str, Any]], source: str) -> dict[str, Any] | None:
    """The download of `source` (`ORG/NAME@REVISION`) to report from the pods' answers: a failure first (the model
    cannot start), else the one furthest along, with its one-line summary. None when no pod answered."""
    known = [a for a in answers if a.get("phase") in ORDER]
    if not known:
        return None
    chosen = min(known, key=lambda a: (ORDER[a["phase"]], -int(a.get("bytesDone") or 0)))
    download = {name: chosen.get(name) or default for name, default in FIELDS.items()}
    return {**download, "source": source, "summary": summary(download)}


def settled(old: dict[str, Any] | None, source: str) -> dict[str, Any]:
    """The download of a model an engine serves from the cache: done, with the size last heard of that source
    (none if its fetch found the cache full before anyone asked)."""
    total = int((old or {}).get("bytesTotal") or 0) if (old or {}).get("source") == source else 0
    return {**FIELDS, "phase": "Ready", "bytesDone": total, "bytesTotal": total, "source": source, "summary": "Ready"}


def failure(download: dict[str, Any] | None) -> tuple[str, str] | None:
    """(reason, message) when the download failed."""
    if download is None or download.get("phase") != "Failed":
        return None
    return Reason.DOWNLOAD_FAILED, str(download.get("message") or "the download failed")


def summary(download: dict[str, Any]) -> str:
    """`Downloading 43% 6.1/14.2GiB 85MiB/s 95s`, `Verifying 14.2GiB`, `Failed: <message>`, `Ready`, `Pending`."""
    phase, done, total = download["phase"], download["bytesDone"], download["bytesTotal"]
    if phase == "Failed":
        return f"Failed: {download['message']}"[:120]
    if phase == "Downloading" and total:
        parts = [phase, f"{100 * done // total}%", f"{done / 2**30:.1f}/{total / 2**30:.1f}GiB"]
        if download["bytesPerSecond"]:
            parts.append(f"{download['bytesPerSecond'] / 2**20:.0f}MiB/s")
            parts.append(f"{download['secondsLeft']}s")
        return " ".join(parts)
    if phase == "Verifying" and total:
        return f"Verifying {total / 2**30:.1f}GiB"
    return str(phase)
