import sys

from kvmm.cli import main

sys.exit(main())
