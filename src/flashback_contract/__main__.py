import sys

from flashback_contract.cli import main

sys.exit(main())
