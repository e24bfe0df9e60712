"""`python -m fluidgate` runs the command line."""

from fluidgate.cli import main

main()
