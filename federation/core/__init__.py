"""The shared core: what the site, the server and the strategies all import (settings, data,
model, privacy accounting, metrics, wire keys, errors). It imports nothing else of the project."""
