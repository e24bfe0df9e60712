"""What the optimum means to an operator: the cluster plan and the solution report."""
