#!/usr/bin/env python3
"""The stand-in `nomad agent` as an executable file: `python testbed/fake_nomad.py agent [flags...]`,
what the tests hand to `run` as the agent. The stand-in itself is the package `testbed.nomad_standin`
(its docstring says what it does as Nomad does, and its environment and report)."""

import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a file, Python puts testbed/ first on sys.path; the package is imported from the repository root.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from testbed.nomad_standin.agent import main

    sys.exit(main())
