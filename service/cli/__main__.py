"""`python -m service.cli`: the same as the `newsroom` console script."""
from service.cli import main

main()
