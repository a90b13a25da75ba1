"""The job queue (Huey) and what its workers run."""
