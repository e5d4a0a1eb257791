"""The daemon (`shoal run`): its loop, the file watcher and the control socket. Installing it
as an OS service is not the daemon's job: see shoal.ops.service_unit."""
