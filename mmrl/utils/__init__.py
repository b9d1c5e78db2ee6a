"""Small helpers shared by datasets and weights: downloads and safe archive extraction."""
