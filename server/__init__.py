"""The coordinator side: the Flower ServerApp, its round loop and the run folder it writes."""
