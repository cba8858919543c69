import sys

from certnn.cli.main import main

sys.exit(main())
