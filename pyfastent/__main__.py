import sys

from pyfastent.cli import main

sys.exit(main())
