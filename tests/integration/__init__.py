"""Real federations (Flower simulation, in-process, or a deployed SuperLink): seconds to minutes each."""
