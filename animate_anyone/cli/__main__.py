"""``python -m animate_anyone.cli``."""
from animate_anyone.cli import main

main()
