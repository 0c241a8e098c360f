"""What tests share: the launcher runner, real-run builders, deployment networks, case tables."""
