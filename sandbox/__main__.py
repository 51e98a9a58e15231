"""`python -m sandbox [--port N] [--large N] [--seed N]`: serve the sandbox in the foreground."""

from __future__ import annotations

import argparse
import sys
import threading

from sandbox.core import Sandbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--large", type=int, default=0)
    args = parser.parse_args(argv)
    sb = Sandbox(seed=args.seed, large=args.large).start(args.host, args.port)
    sys.stdout.write(f"sandbox listening on {sb.base_url}\n")
    for key, value in sb.env().items():
        sys.stdout.write(f"export {key}={value}\n")
    sys.stdout.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sb.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
