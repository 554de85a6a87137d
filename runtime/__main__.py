"""`python -m vif.runtime`: the same as the `vif-runtime` command."""

import sys

from vif.runtime.cli import main

if __name__ == "__main__":  # vLLM's engine starts worker processes by spawn, which re-imports __main__
    sys.exit(main())
