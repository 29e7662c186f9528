#!/usr/bin/env python3
"""Container healthcheck: exit 0 only when the service's /readyz answers 200.

Usage: hivemind-healthcheck [port]   (default: $HIVEMIND_PORT)
"""

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("HIVEMIND_PORT", "")
    if not port.isdigit():
        sys.stderr.write("hivemind-healthcheck: no port given and HIVEMIND_PORT unset\n")
        return 2
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=4) as resp:
            return 0 if resp.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        sys.stderr.write(f"hivemind-healthcheck: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
