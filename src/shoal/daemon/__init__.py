"""The daemon: what runs in the background, and how it is installed as a service."""
