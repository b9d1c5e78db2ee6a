"""Results: read runs, aggregate seeds, paper tables, plots, published reference numbers."""
