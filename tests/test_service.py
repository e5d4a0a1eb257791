"""`shoal service install` / `uninstall`: the files written, their well-formedness, the commands run."""

from __future__ import annotations

import configparser
import os
import plistlib
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from shoal.ops import service_unit as svc
from shoal.errors import UsageError


class FakeRun:
    """Stands in for subprocess.run: records every argv; `missing` commands raise
    FileNotFoundError, `failing` ones exit 1."""

    def __init__(self, missing: tuple[str, ...] = (), failing: tuple[str, ...] = ()):
        self.calls: list[list[str]] = []
        self.missing = missing
        self.failing = failing

    def __call__(self, argv, **kwargs):
        self.calls.append(list(argv))
        if argv[0] in self.missing:
            raise FileNotFoundError(argv[0])
        rc = 1 if argv[0] in self.failing else 0
        return subprocess.CompletedProcess(argv, rc, "", "Failed to connect to bus" if rc else "")


@pytest.fixture
def env(tmp_path):
    """A temp HOME, a Termux prefix, a state dir, a config path and a shoal executable whose
    directory has a space in its name."""
    home = tmp_path / "home"
    home.mkdir()
    exe = tmp_path / "my bin" / "shoal"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return {
        "home": home,
        "prefix": tmp_path / "usr",
        "state_dir": home / ".local" / "share" / "shoal",
        "config": home / ".config" / "shoal" / "config.yaml",
        "exec_argv": [str(exe)],
    }


def do_install(env, platform, run, config="default", **kw):
    config_path = env["config"] if config == "default" else config
    return svc.install(
        platform, env["home"], env["exec_argv"], config_path, env["state_dir"],
        run=run, termux_prefix=env["prefix"], **kw,
    )


def do_uninstall(env, platform, run, **kw):
    return svc.uninstall(platform, env["home"], run=run, termux_prefix=env["prefix"], **kw)


def expected_files(env, platform):
    return {
        "systemd": [env["home"] / ".config/systemd/user/shoal.service"],
        "launchd": [env["home"] / "Library/LaunchAgents/org.shoal.agent.plist"],
        "termux": [
            env["prefix"] / "var/service/shoal/run",
            env["prefix"] / "var/service/shoal/log/run",
            env["home"] / ".termux/boot/shoal",
        ],
    }[platform]


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


# --- platform and command detection --------------------------------------------------------


@pytest.mark.parametrize(
    "environ, sys_platform, expected",
    [
        ({"TERMUX_VERSION": "0.118.0"}, "linux", "termux"),
        ({"PREFIX": "/data/data/com.termux/files/usr"}, "linux", "termux"),
        ({}, "darwin", "launchd"),
        ({"PREFIX": "/usr/local"}, "linux", "systemd"),
    ],
)
def test_detect_platform(environ, sys_platform, expected):
    assert svc.detect_platform(environ, sys_platform) == expected


def test_detect_platform_refuses_unsupported():
    with pytest.raises(UsageError, match="no service manager support for win32"):
        svc.detect_platform({}, "win32")


def test_default_exec_argv_prefers_the_script_beside_python(tmp_path):
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.write_text("")
    assert svc.default_exec_argv(str(python)) == [str(python), "-m", "shoal"]
    script = tmp_path / "bin" / "shoal"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert svc.default_exec_argv(str(python)) == [str(script)]


def test_env_paths_takes_absolute_xdg_and_termux_prefix():
    assert svc.env_paths({"XDG_CONFIG_HOME": "/x/cfg", "PREFIX": "/data/data/com.termux/files/usr"}) == {
        "xdg_config_home": Path("/x/cfg"),
        "termux_prefix": Path("/data/data/com.termux/files/usr"),
    }
    assert svc.env_paths({"XDG_CONFIG_HOME": "relative/cfg", "PREFIX": "/usr"}) == {}


def test_plan_refuses_relative_exec_and_unknown_platform(env):
    with pytest.raises(UsageError, match="absolute path"):
        svc.plan_install("systemd", env["home"], ["shoal"], None, env["state_dir"])
    with pytest.raises(UsageError, match="unknown service platform"):
        svc.plan_install("upstart", env["home"], env["exec_argv"], None, env["state_dir"])


@pytest.mark.parametrize("platform", svc.PLATFORMS)
def test_every_placeholder_is_substituted(env, platform):
    for f in svc.plan_install(platform, env["home"], env["exec_argv"], env["config"], env["state_dir"]):
        leftover = re.findall(r"\{(exec|config_args|log_dir|prefix|sh_prefix)\}", f.content)
        assert leftover == [], f"{f.path}: {leftover}"
        assert svc.MARKER in f.content


# --- install / reinstall / refuse / uninstall, every platform ------------------------------

ACTIVATION = {
    "systemd": [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", "shoal.service"],
    ],
    "launchd": [["launchctl", "load", "-w", "PLIST"]],
    "termux": [["sv-enable", "shoal"]],
}


def with_plist(calls, env):
    plist = str(expected_files(env, "launchd")[0])
    return [[plist if a == "PLIST" else a for a in argv] for argv in calls]


@pytest.mark.parametrize("platform", svc.PLATFORMS)
def test_install_writes_files_and_runs_activation(env, platform):
    run = FakeRun()
    lines = do_install(env, platform, run)
    files = expected_files(env, platform)
    for path in files:
        assert path.is_file(), path
        assert mode(path) == (0o755 if platform == "termux" else 0o644)
        text = path.read_text()
        assert svc.MARKER in text
        assert not list(path.parent.glob(".*.tmp")), "temporary file left behind"
    main_text = files[0].read_text()
    assert "my bin/shoal" in main_text
    assert str(env["config"]) in main_text
    assert run.calls == with_plist(ACTIVATION[platform], env)
    assert any(str(files[0]) in line and line.startswith("installed") for line in lines)


@pytest.mark.parametrize("platform", svc.PLATFORMS)
def test_second_install_replaces_a_shoal_file(env, platform):
    do_install(env, platform, FakeRun())
    target = expected_files(env, platform)[0]
    target.write_text(target.read_text().replace("run", "old-run"))  # an older shoal's file
    run = FakeRun()
    lines = do_install(env, platform, run)
    fresh = svc.plan_install(
        platform, env["home"], env["exec_argv"], env["config"], env["state_dir"], termux_prefix=env["prefix"]
    )[0].content
    assert target.read_text() == fresh
    assert f"replaced {target}" in lines
    if platform == "systemd":
        assert run.calls[-1] == ["systemctl", "--user", "restart", "shoal.service"]
    if platform == "launchd":
        assert run.calls == [["launchctl", "unload", str(target)], ["launchctl", "load", "-w", str(target)]]
    if platform == "termux":
        assert run.calls == [["sv-enable", "shoal"], ["sv", "restart", "shoal"]]


def test_identical_reinstall_changes_nothing(env):
    do_install(env, "systemd", FakeRun())
    run = FakeRun()
    lines = do_install(env, "systemd", run)
    assert f"unchanged {expected_files(env, 'systemd')[0]}" in lines
    assert ["systemctl", "--user", "restart", "shoal.service"] not in run.calls


@pytest.mark.parametrize("platform", svc.PLATFORMS)
def test_foreign_file_is_refused_and_untouched(env, platform):
    files = expected_files(env, platform)
    foreign = files[-1]  # for Termux: the boot script, so the first two would be written first
    foreign.parent.mkdir(parents=True, exist_ok=True)
    foreign.write_text("#!/bin/sh\n# my own script\n")
    foreign.chmod(0o700)
    run = FakeRun()
    with pytest.raises(UsageError, match="not installed by shoal"):
        do_install(env, platform, run)
    assert foreign.read_text() == "#!/bin/sh\n# my own script\n"
    assert mode(foreign) == 0o700
    assert all(not p.exists() for p in files[:-1]), "nothing is written when one target is foreign"
    assert run.calls == []


UNINSTALL = {
    "systemd": [
        ["systemctl", "--user", "disable", "--now", "shoal.service"],
        ["systemctl", "--user", "daemon-reload"],
    ],
    "launchd": [["launchctl", "unload", "-w", "PLIST"]],
    "termux": [["sv", "down", "shoal"]],
}


@pytest.mark.parametrize("platform", svc.PLATFORMS)
def test_uninstall_stops_and_removes(env, platform):
    do_install(env, platform, FakeRun())
    run = FakeRun()
    lines = do_uninstall(env, platform, run)
    for path in expected_files(env, platform):
        assert not path.exists(), path
        assert f"removed {path}" in lines
    assert run.calls == with_plist(UNINSTALL[platform], env)


def test_uninstall_leaves_foreign_files_and_runs_nothing(env):
    unit = expected_files(env, "systemd")[0]
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/usr/bin/someone-else\n")
    run = FakeRun()
    lines = do_uninstall(env, "systemd", run)
    assert unit.read_text() == "[Service]\nExecStart=/usr/bin/someone-else\n"
    assert any("not installed by shoal" in line for line in lines)
    assert run.calls == []


def test_uninstall_when_nothing_is_installed(env):
    run = FakeRun()
    lines = do_uninstall(env, "launchd", run)
    assert lines == ["no shoal service is installed for launchd"]
    assert run.calls == []


def test_termux_uninstall_removes_runit_leftovers(env):
    do_install(env, "termux", FakeRun())
    service_dir = env["prefix"] / "var/service/shoal"
    (service_dir / "supervise").mkdir()
    (service_dir / "supervise" / "pid").write_text("123\n")
    (service_dir / "log" / "supervise").mkdir()
    (service_dir / "down").write_text("")
    do_uninstall(env, "termux", FakeRun())
    assert not service_dir.exists()


def test_systemd_uninstall_removes_enablement_link_when_systemctl_is_missing(env):
    do_install(env, "systemd", FakeRun())
    unit = expected_files(env, "systemd")[0]
    wants = unit.parent / "default.target.wants" / "shoal.service"
    wants.parent.mkdir()
    wants.symlink_to(unit)
    lines = do_uninstall(env, "systemd", FakeRun(missing=("systemctl",)))
    assert not unit.exists()
    assert not wants.is_symlink()
    assert any("systemctl is not installed" in line for line in lines)


# --- missing or failing service managers never raise ---------------------------------------


def test_missing_systemctl_says_what_to_run_by_hand(env):
    lines = do_install(env, "systemd", FakeRun(missing=("systemctl",)))
    assert expected_files(env, "systemd")[0].is_file()
    problem = [line for line in lines if line.startswith("could not run")]
    assert len(problem) == 1
    assert "systemctl is not installed" in problem[0]
    assert problem[0].endswith(
        "run by hand: systemctl --user daemon-reload && systemctl --user enable --now shoal.service"
    )


def test_failing_sv_enable_is_reported(env):
    lines = do_install(env, "termux", FakeRun(failing=("sv-enable",)))
    assert any("exit status 1" in line and "run by hand: sv-enable shoal" in line for line in lines)


def test_xdg_config_home_is_respected(env, tmp_path):
    xdg = tmp_path / "xdg"
    do_install(env, "systemd", FakeRun(), xdg_config_home=xdg)
    assert (xdg / "systemd/user/shoal.service").is_file()
    assert not expected_files(env, "systemd")[0].exists()


# --- well-formedness -----------------------------------------------------------------------


def test_systemd_unit_parses(env):
    do_install(env, "systemd", FakeRun())
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(expected_files(env, "systemd")[0].read_text())
    assert parser.sections() == ["Unit", "Service", "Install"]
    service = parser["Service"]
    exe = env["exec_argv"][0]
    assert service["ExecStart"] == f'"{exe}" run --config {env["config"]}'
    assert service["Type"] == "simple"
    assert service["Restart"] == "on-failure"
    assert service["RestartSec"] == "10"
    assert service["KillSignal"] == "SIGTERM"
    assert service["Environment"] == "PYTHONUNBUFFERED=1"
    assert parser["Install"]["WantedBy"] == "default.target"


def test_systemd_quoting_escapes_specifiers_and_variables(env):
    config = env["home"] / 'odd "100%" $HOME.yaml'
    unit = svc.plan_install("systemd", env["home"], env["exec_argv"], config, env["state_dir"])[0]
    assert f'--config "{env["home"]}/odd \\"100%%\\" $$HOME.yaml"' in unit.content


def test_systemd_analyze_verifies_the_unit(env, tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd); the unit's "
                    "syntax is still checked by test_systemd_unit_parses")
    config = env["home"] / "my config 100%.yaml"  # a space and a specifier to escape
    do_install(env, "systemd", FakeRun(), config=config)
    unit = expected_files(env, "systemd")[0]
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    result = subprocess.run(
        [analyze, "verify", str(unit)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "notice"},
    )
    # verify also checks that ExecStart's executable exists: the quoted path with a space.
    complaints = [line for line in result.stderr.splitlines() if "shoal.service" in line]
    assert result.returncode == 0, result.stderr
    assert complaints == []


def test_plist_parses_with_the_right_keys(env):
    config = env["home"] / "a&b <c>.yaml"  # XML-special characters must be escaped
    do_install(env, "launchd", FakeRun(), config=config)
    plist = plistlib.loads(expected_files(env, "launchd")[0].read_bytes())
    log_dir = env["state_dir"] / "logs"
    assert plist["Label"] == "org.shoal.agent"
    assert plist["ProgramArguments"] == [*env["exec_argv"], "run", "--config", str(config)]
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert Path(plist["StandardOutPath"]).parent == log_dir
    assert Path(plist["StandardErrorPath"]).parent == log_dir
    assert log_dir.is_dir(), "launchd does not create the log folder itself"


def test_plist_without_config(env):
    do_install(env, "launchd", FakeRun(), config=None)
    plist = plistlib.loads(expected_files(env, "launchd")[0].read_bytes())
    assert plist["ProgramArguments"] == [*env["exec_argv"], "run"]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_termux_scripts_are_valid_sh(env, index):
    do_install(env, "termux", FakeRun())
    script = expected_files(env, "termux")[index]
    assert script.read_text().splitlines()[0] == f"#!{env['prefix']}/bin/sh"
    result = subprocess.run(["/bin/sh", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_termux_default_shebang_and_boot_script():
    files = svc.plan_install("termux", Path("/home/u"), ["/data/data/com.termux/files/usr/bin/shoal"],
                             None, Path("/home/u/.local/share/shoal"))
    for f in files:
        assert f.content.startswith("#!/data/data/com.termux/files/usr/bin/sh\n")
    boot = files[2].content
    assert boot.index("termux-wake-lock") < boot.index(". /data/data/com.termux/files/usr/etc/profile")
    assert "pkg install termux-services" in boot
    assert "exec svlogd -tt /data/data/com.termux/files/usr/var/log/sv/shoal" in files[1].content


def test_termux_run_script_quotes_arguments_for_the_shell(env):
    config = env["home"] / "it's $HOME; `x`.yaml"
    do_install(env, "termux", FakeRun(), config=config)
    lines = expected_files(env, "termux")[0].read_text().splitlines()
    exec_line = [line for line in lines if line.startswith("exec ") and "run" in line][0]
    # Let sh itself split the command line and print each word NUL-terminated.
    probe = "printf '%s\\0' " + exec_line[len("exec "):]
    out = subprocess.run(["/bin/sh", "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split("\0")[:-1] == [*env["exec_argv"], "run", "--config", str(config)]
    assert shlex.split(exec_line)[1:] == [*env["exec_argv"], "run", "--config", str(config)]
