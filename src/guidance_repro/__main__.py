import sys

from guidance_repro.cli import main

sys.exit(main())
