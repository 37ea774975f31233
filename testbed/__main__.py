"""`python -m testbed` is `make run` (testbed.hosts.main): --keep, --destroy."""

import sys

from testbed.hosts import main

sys.exit(main(sys.argv[1:]))
