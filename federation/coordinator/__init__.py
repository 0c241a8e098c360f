"""The coordinator's side: the Hydra launcher, the simulation, in-process and deployment runtimes,
resume, and the Flower app config and connection it builds."""
