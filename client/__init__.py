"""The hospital side: local data, local DP training, and the Flower ClientApp that wraps them."""
