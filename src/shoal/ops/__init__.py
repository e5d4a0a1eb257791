"""Operations on a device that are not the daemon: the doctor and OS service units."""
