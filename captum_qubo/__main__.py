"""``python -m captum_qubo`` runs the ``captum-qubo`` command line."""
import sys

from captum_qubo.cli import main

if __name__ == "__main__":
    sys.exit(main())
