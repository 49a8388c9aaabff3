"""AWS on this machine, for the demo: moto's resources, sample logs, `logsieve simulate` and the
live pipeline of `logsieve up`."""
