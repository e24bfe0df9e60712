"""What leaves the solver for production: the static plan and the controller spec."""
