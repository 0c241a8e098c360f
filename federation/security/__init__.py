"""Key material and app signing: the PKI for TLS and node keys, and FAB signatures."""
