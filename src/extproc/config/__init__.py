"""Loading and validating configuration files."""
