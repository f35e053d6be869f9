"""``python -m se_local`` = the ``se-local`` command."""

from .cli import main

if __name__ == "__main__":
    main()
