import sys

from studio.cli.commands import main

sys.exit(main())
