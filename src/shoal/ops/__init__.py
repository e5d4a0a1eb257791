"""Operations on a device that are not the daemon: setting it up (init, OS service units) and
the doctor."""
