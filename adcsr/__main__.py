import sys

from adcsr.cli import main

sys.exit(main())
