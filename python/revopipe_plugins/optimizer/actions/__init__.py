"""The built-in optimizer actions. They tune revopipe itself and nothing else."""
