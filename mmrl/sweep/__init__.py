"""Protocol sweeps: jobs, run state, locks, executors (local, GPU pool, SLURM, print)."""
