"""The daemon as it runs on a phone's shared storage or an SD card: the folder on a real
case-insensitive filesystem without modes or symlinks (a loop-mounted exFAT image), file events
off (`watch: false`: Android's shared storage sends none), only periodic rescans. Another
device on an ordinary filesystem with its watcher on; both are device logins of a real hub."""

from __future__ import annotations

import os
import stat

import pytest

from tests.daemons import content, shoal, wait_for

pytestmark = pytest.mark.slow


def test_a_card_without_file_events_syncs_by_its_rescans(make_daemon, exfat_dir):
    laptop = make_daemon("laptop")
    card = make_daemon("card", folders={"docs": str(exfat_dir / "docs")}, watch=False, interval="1s")
    laptop.start()
    card.start()
    status = card.status()
    assert "watching off" in status["daemon"]["watcher"], status["daemon"]

    # Written on the card: no event, found by the next rescan.
    (card.root / "DCIM").mkdir(parents=True)
    (card.root / "DCIM" / "IMG_0001.JPG").write_bytes(b"\xff\xd8 a photo")
    (card.root / "Empty album").mkdir()
    wait_for(lambda: content(laptop.root / "DCIM" / "IMG_0001.JPG") == b"\xff\xd8 a photo", what="photo on laptop")
    wait_for(lambda: (laptop.root / "Empty album").is_dir(), what="empty album on laptop")

    # From the laptop: a script with its exec bit, a case-only rename, a name that folds onto another.
    script = laptop.root / "backup.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    os.rename(laptop.root / "DCIM" / "IMG_0001.JPG", laptop.root / "DCIM" / "img_0001.jpg")
    (laptop.root / "DCIM" / "Img_0001.Jpg").write_bytes(b"another photo")
    wait_for(lambda: content(card.root / "backup.sh") == b"#!/bin/sh\n", what="script on card")
    wait_for(lambda: "img_0001.jpg" in os.listdir(card.root / "DCIM"), what="the rename on card")
    wait_for(lambda: any(".sync-conflict-" in n for n in os.listdir(card.root / "DCIM")), what="collision copy")
    on_card = {n: (card.root / "DCIM" / n).read_bytes() for n in os.listdir(card.root / "DCIM")}
    assert sorted(on_card.values()) == sorted([b"\xff\xd8 a photo", b"another photo"]), on_card

    # The card's rescans change nothing back: the laptop's script keeps its exec bit.
    proc = shoal(card.config, "sync", "--now")
    assert proc.returncode == 0, proc.stderr
    assert os.stat(script).st_mode & stat.S_IXUSR
    assert content(laptop.root / "DCIM" / "img_0001.jpg") == b"\xff\xd8 a photo"
    assert content(laptop.root / "DCIM" / "Img_0001.Jpg") == b"another photo"
    assert card.stop() == 0 and laptop.stop() == 0
