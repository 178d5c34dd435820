"""Queue-driven autoscaling: grow the worker groups from the job queue, shrink them without
removing a busy worker (`heatgen autoscale`)."""
