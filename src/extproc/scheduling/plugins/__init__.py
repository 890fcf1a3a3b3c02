"""Built-in scheduling plugins, one per module; registered in `extproc.scheduling.registry`."""
