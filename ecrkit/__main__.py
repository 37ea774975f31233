import sys

from ecrkit.cli import main

sys.exit(main())
