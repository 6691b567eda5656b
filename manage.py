#!/usr/bin/env python
import os
import sys

# Commands that only compare the code with itself (they never sign, serve or read data) run without a
# secret key; everything else still refuses to start without one outside debug mode.
KEYLESS_COMMANDS = frozenset({"makemigrations"})


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vsm.settings")
    if len(sys.argv) > 1 and sys.argv[1] in KEYLESS_COMMANDS:
        os.environ.setdefault("VSM_SECRET_KEY", f"unused-by-{sys.argv[1]}-" + "x" * 40)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
