"""`vif-runtime fetch`: what a model's init container runs before the engine's, the download into the cache volume
once, with its progress at `GET /progress` for the operator to read (operator/downloads.py)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
import time
from pathlib import Path

from vif.runtime.sources.cache import STALL_TIMEOUT, ensure_model, logged, remote_source
from vif.runtime.sources.fetch import DownloadError, Progress
from vif.runtime.sources.huggingface import REPO_ID
from vif.runtime.sources.progress import DownloadProgress, serving_progress
from vif.runtime.sources.s3 import S3_URI

log = logging.getLogger("vif.runtime")


def fetch(argv: list[str]) -> int:
    """What a model's init container runs before the engine's: the download, once per cache volume."""
    parser = argparse.ArgumentParser(
        prog="vif-runtime fetch",
        description="Download a Hugging Face model (HF_ENDPOINT, HF_TOKEN) or an S3 prefix (AWS_ENDPOINT_URL,"
        " AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) into the cache, resumed and verified; nothing to do"
        " if it is there. Prints the model's folder.",
    )
    parser.add_argument("model", help="ORG/NAME or s3://bucket/prefix")
    parser.add_argument("--revision", default=None, help="a branch, tag or commit (default main)")
    parser.add_argument("--cache", type=Path, default=None, help="default $VIF_MODEL_CACHE, else ~/.cache/vif/models")
    parser.add_argument("--link", type=Path, default=None, help="a symlink to make (or move) to the model's folder")
    parser.add_argument("--stall-timeout", type=float, default=STALL_TIMEOUT, help="seconds without a byte: retry")
    parser.add_argument("--progress-host", default="0.0.0.0", help="where GET /progress listens")
    parser.add_argument("--progress-port", type=int, default=0, help="serve GET /progress (JSON) here; 0: do not")
    parser.add_argument(
        "--hold-failure",
        type=float,
        default=0.0,
        help="seconds a failed download keeps answering /progress with its failure before it exits",
    )
    args = parser.parse_args(argv)
    if re.fullmatch(REPO_ID, args.model) is None and re.fullmatch(S3_URI, args.model) is None:
        parser.error(f"{args.model}: neither a Hugging Face id (ORG/NAME) nor an S3 URI (s3://bucket/prefix)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    state = DownloadProgress()

    def report(what: str, total: int) -> Progress:
        to_log, to_state = logged(what, total), state.reporter(what, total)
        return lambda n: (to_log(n), to_state(n))

    served = False
    with contextlib.ExitStack() as stack:
        if args.progress_port:
            try:
                stack.enter_context(serving_progress(state, args.progress_host, args.progress_port))
                served = True
            except OSError as exc:  # progress is for people to read: the download goes on without it
                log.warning("not serving /progress on %s:%d: %s", args.progress_host, args.progress_port, exc)
        try:
            source = remote_source(args.model, args.revision)
            folder = ensure_model(source, args.cache, report, args.stall_timeout, link=args.link)
        except DownloadError as exc:
            print(f"vif-runtime fetch: {exc}", file=sys.stderr)
            state.fail(str(exc))
            time.sleep(args.hold_failure if served else 0)
            return 1
        state.finish()
    print(folder)
    return 0
