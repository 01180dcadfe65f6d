"""An image's config as run defaults (issue 15): the config read and checked
as hostile input (ctr.images.config), and docker's rules for how it meets the
user's options (ctr.spec.new_spec / build_spec). No root."""

import dataclasses
import json
import os

import pytest

from ctr.errors import InvalidSpec
from ctr.host import HostFacts
from ctr.images.config import MAX_ITEMS, ImageConfig, image_config, parse_config
from ctr.rootfs import volumes
from ctr.spec import (
    DEFAULT_PATH,
    InstanceSpec,
    Port,
    Volume,
    build_spec,
    new_spec,
    validate,
)
from ctr.store import Store

HOST = HostFacts(cpus_online=(0, 1), memory=1 << 30)
OCI = {
    "Entrypoint": ["/entry.sh", "--flag"],
    "Cmd": ["serve", "--port", "80"],
    "Env": ["PATH=/opt/bin:/bin", "LANG=C.UTF-8", "NOVALUE"],
    "WorkingDir": "/srv/app/",
    "User": "nobody:nogroup",
    "ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8000-8002": {}, "9/sctp": {}},
    "StopSignal": "SIGQUIT",
    "Volumes": {"/data": {}, "/var//cache/": {}},
    "Labels": {"org.opencontainers.image.title": "demo", "empty": ""},
    "Healthcheck": {"Test": ["CMD", "true"]},
    "ArgsEscaped": True,
}
RECORD = {"name": "demo", "id": "sha256:abc", "config": OCI}
FLAT = {"name": "busybox", "id": "sha256:def", "cmd": ["sh"], "env": ["IMG=1"],
        "workdir": "/root"}


def spec_of(record, **kw):
    return new_spec(image=record, defaults=image_config(record), host=HOST, **kw)


def cli(record, command=(), **kw):
    return build_spec(image=record, command=command, defaults=image_config(record), host=HOST,
                      **kw)


# -- reading the config --------------------------------------------------------------------

def test_an_oci_config_becomes_typed_run_defaults():
    cfg = image_config(RECORD)
    assert cfg == ImageConfig(
        entrypoint=("/entry.sh", "--flag"), cmd=("serve", "--port", "80"),
        env=("PATH=/opt/bin:/bin", "LANG=C.UTF-8"),  # "NOVALUE" sets nothing: ignored
        workdir="/srv/app", user="nobody:nogroup",
        exposed_ports=((53, "udp"), (80, "tcp"), (8000, "tcp"), (8001, "tcp"), (8002, "tcp")),
        stop_signal="SIGQUIT", volumes=("/data", "/var/cache"),
        labels={"org.opencontainers.image.title": "demo", "empty": ""},
        healthcheck={"test": ("CMD", "true")})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.cmd = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.labels["x"] = "y"


def test_a_flat_record_is_a_config_of_cmd_env_and_workdir():
    assert image_config(FLAT) == ImageConfig(cmd=("sh",), env=("IMG=1",), workdir="/root")
    assert image_config({"name": "x", "id": "y"}) == ImageConfig()


def test_the_whole_config_blob_is_read_at_its_config():
    blob = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"},
            "config": {"Cmd": ["true"]}}
    assert image_config({"name": "x", "config": blob}).cmd == ("true",)


def test_null_and_empty_values_are_unset():
    cfg = parse_config({"Entrypoint": None, "Cmd": None, "Env": None, "WorkingDir": "",
                        "User": "", "StopSignal": "", "ExposedPorts": None, "Volumes": None,
                        "Labels": None})
    assert cfg == ImageConfig()


@pytest.mark.parametrize("config, msg", [
    ([], "config is not a JSON object"),
    ({"Cmd": "sh -c true"}, "Cmd is not a list of strings"),
    ({"Entrypoint": ["/bin/sh", 3]}, "Entrypoint has 3 where a string belongs"),
    ({"Cmd": ["a\0b"]}, "Cmd contains a NUL byte"),
    ({"Env": ["A=1\0B=2"]}, "Env contains a NUL byte"),
    ({"Env": ["=x"]}, "a variable needs a name"),
    ({"Env": {"A": "1"}}, "Env is not a list of strings"),
    ({"WorkingDir": "srv"}, "WorkingDir 'srv' is not an absolute path"),
    ({"WorkingDir": "/srv\0"}, "WorkingDir contains a NUL byte"),
    ({"User": "root;rm -rf"}, "User 'root;rm -rf' is not NAME"),
    ({"User": "a:b:c"}, "is not NAME"),
    ({"ExposedPorts": {"http": {}}}, "ExposedPorts has 'http'"),
    ({"ExposedPorts": {"80/icmp": {}}}, "ExposedPorts has '80/icmp'"),
    ({"ExposedPorts": {"0/tcp": {}}}, "ports are 1-65535"),
    ({"ExposedPorts": {"70000": {}}}, "ports are 1-65535"),
    ({"ExposedPorts": {"9-3": {}}}, "ports are 1-65535"),
    ({"ExposedPorts": {"1-65535/tcp": {}}}, f"more than {MAX_ITEMS} ports"),
    ({"ExposedPorts": ["80/tcp"]}, "ExposedPorts is not a JSON object"),
    ({"StopSignal": "SIGNOPE"}, "StopSignal 'SIGNOPE' is not a signal"),
    ({"StopSignal": 15}, "StopSignal has 15"),
    ({"Volumes": {"data": {}}}, "Volumes has 'data': not an absolute path"),
    ({"Volumes": {"/": {}}}, "cannot replace the root"),
    ({"Volumes": {"/a/..": {}}}, "cannot replace the root"),
    ({"Volumes": {"/proc/sys": {}}}, "not over the kernel's filesystems"),
    ({"Volumes": {"/dev": {}}}, "not over the kernel's filesystems"),
    ({"Labels": {"a": 1}}, "Labels has 1"),
    ({"Labels": {"": "x"}}, "Labels has an empty key"),
    ({"Labels": ["a=b"]}, "Labels is not a JSON object"),
    ({"Env": [f"K{i}=v" for i in range(MAX_ITEMS + 1)]}, f"(at most {MAX_ITEMS})"),
    ({"Cmd": ["x" * (200 << 10)]}, "over 128 KiB"),
])
def test_a_hostile_config_is_refused_in_one_line(config, msg):
    with pytest.raises(InvalidSpec) as err:
        image_config({"name": "evil", "config": config})
    text = str(err.value)
    assert text.startswith("the config of image evil is refused: ") and msg in text, text
    assert "\n" not in text


# -- docker's rules -------------------------------------------------------------------------

def test_the_command_is_entrypoint_plus_cmd():
    assert spec_of(RECORD).command == ("/entry.sh", "--flag", "serve", "--port", "80")


def test_arguments_after_the_image_replace_cmd():
    assert spec_of(RECORD, command=("version",)).command == ("/entry.sh", "--flag", "version")
    assert cli(FLAT, ["echo", "hi"]).command == ("echo", "hi")
    assert cli(FLAT).command == ("sh",)


def test_entrypoint_replaces_the_images_and_clears_cmd():
    assert cli(RECORD, entrypoint="/bin/sh").command == ("/bin/sh",)
    assert cli(RECORD, ["-c", "id"], entrypoint="/bin/sh").command == ("/bin/sh", "-c", "id")
    assert cli(RECORD, ["true"], entrypoint="").command == ("true",)
    with pytest.raises(InvalidSpec, match="no command given"):
        cli(RECORD, entrypoint="")
    assert spec_of(RECORD, entrypoint=("/bin/env", "-i")).command == ("/bin/env", "-i")


def test_init_without_a_command_boots_init_whatever_the_image_says():
    spec = spec_of(dict(RECORD, rootfs=None), init=True)
    assert spec.command == ("/sbin/init",) and spec.stop_signal == "SIGRTMIN+3"


def test_env_image_then_ctrs_then_the_users():
    spec = cli(RECORD, env=["LANG=fr_FR.UTF-8", "EXTRA=1"], tty=True)
    env = dict(e.split("=", 1) for e in spec.env)
    assert env["PATH"] == "/opt/bin:/bin"  # the image's PATH is kept, as docker does
    assert env["LANG"] == "fr_FR.UTF-8" and env["EXTRA"] == "1"  # -e wins
    assert env["TERM"] == "xterm" and env["HOSTNAME"] == spec.hostname
    assert "NOVALUE" not in env
    flat = cli(FLAT, env=["PATH=/mine"])
    assert flat.env == ("IMG=1", "PATH=/mine", f"HOSTNAME={flat.hostname}")
    assert cli(FLAT).env[1] == f"PATH={DEFAULT_PATH}"  # no PATH in the image: ctr's


def test_env_file_and_e_over_the_images(tmp_path):
    f = tmp_path / "env"
    f.write_text("LANG=de\n# comment\nFROM_FILE=1\n")
    env = cli(RECORD, env=["FROM_FILE=2"], env_files=[str(f)]).env
    assert "LANG=de" in env and "FROM_FILE=2" in env


def test_workdir_user_and_stop_signal_unless_given():
    spec = spec_of(RECORD)
    assert (spec.workdir, spec.user, spec.stop_signal) == ("/srv/app", "nobody:nogroup",
                                                           "SIGQUIT")
    spec = cli(RECORD, workdir="/tmp", user="1000:1000", stop_signal="SIGINT")
    assert (spec.workdir, spec.user, spec.stop_signal) == ("/tmp", "1000:1000", "SIGINT")
    assert cli(FLAT).workdir == "/root" and cli(FLAT).user is None
    assert cli(FLAT).stop_signal == "SIGTERM"


def test_publish_all_asks_a_free_host_port_for_each_exposed_port():
    spec = cli(RECORD, publish_all=True, publish=["8080:80"])
    assert spec.ports == (Port(host_port=8080, port=80),)  # -p wins for 80/tcp
    assert spec.publish_all == tuple(Port(host_port=0, port=p, proto=proto) for p, proto in
                                     ((53, "udp"), (8000, "tcp"), (8001, "tcp"), (8002, "tcp")))
    assert cli(RECORD).publish_all == ()  # exposed is not published without -P
    # nowhere to publish: ignored, as docker does
    assert cli(RECORD, publish_all=True, network="host").publish_all == ()
    assert cli(RECORD, publish_all=True, network="none").publish_all == ()


def test_a_port_to_choose_must_be_one():
    spec = spec_of(RECORD, publish_all=True)
    with pytest.raises(InvalidSpec, match="invalid -P port"):
        validate(dataclasses.replace(spec, publish_all=(Port(host_port=5, port=80),)), HOST)
    with pytest.raises(InvalidSpec, match="need a bridge network"):
        validate(dataclasses.replace(spec, network="none"), HOST)


def test_each_image_volume_not_covered_is_anonymous(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    spec = cli(RECORD, volumes=[f"{src}:/data"])
    assert spec.volumes == (Volume(source=str(src), target="/data"),
                            Volume(target="/var/cache", anonymous=True))
    assert cli(RECORD, tmpfs=["/var/cache"]).volumes == (Volume(target="/data",
                                                                anonymous=True),)
    assert cli(RECORD, vm=True, memory="128m").volumes == ()  # a VM's are part of its root


def test_labels_the_images_then_label_file_then_label(tmp_path):
    f = tmp_path / "labels"
    f.write_text("# team\nteam=core\nempty=\n")
    spec = cli(RECORD, labels=["team=web", "flag"], label_files=[str(f)])
    assert spec.labels == {"org.opencontainers.image.title": "demo", "empty": "",
                           "team": "web", "flag": ""}
    with pytest.raises(TypeError):
        spec.labels["x"] = "y"
    with pytest.raises(InvalidSpec, match="invalid --label '=x'"):
        cli(FLAT, labels=["=x"])
    with pytest.raises(InvalidSpec, match="cannot read label file"):
        cli(FLAT, label_files=[str(tmp_path / "nope")])


def test_new_fields_round_trip_and_an_old_spec_has_none():
    spec = cli(RECORD, publish_all=True, labels=["a=b"])
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["labels"]["a"] == "b" and data["publish_all"][0]["host_port"] == 0
    assert InstanceSpec.from_dict(data) == spec
    plain = cli(FLAT)
    assert "labels" not in plain.to_dict() and "publish_all" not in plain.to_dict()
    assert InstanceSpec.from_dict(plain.to_dict()).labels == {}


def test_an_anonymous_volume_gets_a_folder_under_the_state_root(tmp_path):
    from ctr.revert import Reverter

    store = Store(str(tmp_path))
    spec = spec_of(RECORD)
    with Reverter() as revert:
        filled = volumes.assign(revert, store, spec)
        revert.success()
    sources = [v["source"] for v in filled.volumes]
    assert all(s.startswith(str(tmp_path / "volumes") + "/") and s.endswith("/_data")
               for s in sources)
    assert all(os.path.isdir(os.path.dirname(s)) for s in sources)
    # a spec that names a folder outside the store's volumes is never removed
    rogue = dataclasses.replace(filled, volumes=(Volume(source=str(tmp_path / "keep" / "_data"),
                                                        target="/x", anonymous=True),))
    (tmp_path / "keep" / "_data").mkdir(parents=True)
    volumes.remove(store, rogue)
    assert (tmp_path / "keep").is_dir()
    volumes.remove(store, filled)
    assert not os.listdir(tmp_path / "volumes")


def test_seed_copies_the_images_folder_without_following_links(tmp_path):
    src = tmp_path / "root" / "data"
    (src / "sub").mkdir(parents=True)
    (src / "file").write_text("from the image")
    os.chmod(src / "file", 0o640)
    (src / "sub" / "deep").write_text("x")
    os.symlink("/etc/passwd", src / "link")
    data = tmp_path / "vol" / "_data"
    data.parent.mkdir()
    volumes.seed(str(src), str(data))
    assert (data / "file").read_text() == "from the image"
    assert (os.stat(data / "file").st_mode & 0o777) == 0o640
    assert (data / "sub" / "deep").read_text() == "x"
    assert os.readlink(data / "link") == "/etc/passwd"  # a link, not the host's file
    (src / "file").write_text("changed")
    volumes.seed(str(src), str(data))  # seeded once: a restart keeps what it holds
    assert (data / "file").read_text() == "from the image"
    empty = tmp_path / "vol2" / "_data"
    empty.parent.mkdir()
    volumes.seed(str(tmp_path / "missing"), str(empty))
    assert empty.is_dir() and not os.listdir(empty)


def test_a_unit_rebuilds_a_spec_of_an_oci_image():
    """`generate systemd --new`: the run it writes gives back the same spec."""
    from test_unit_files import _comparable

    from ctr import systemd
    from ctr.cli.run import run
    from ctr.cli.runflags import _command

    spec = cli(RECORD, ["one", "two"], name="n", labels=["x=1"], publish_all=True,
               env=["LANG=de"])
    argv = systemd.run_args(spec, RECORD)
    assert argv[argv.index("--entrypoint") + 1] == "" and "-P" in argv
    assert "org.opencontainers.image.title=demo" not in argv  # the image's own label
    params = run.make_context("run", argv[1:]).params
    for key in ("detach", "interactive", "image", "pull", "platform", "tls_verify"):
        params.pop(key)
    again = cli(RECORD, _command(params.pop("command")), **params)
    ours = _comparable(spec, True)
    theirs = _comparable(again, True)
    for d in (ours, theirs):  # each run makes its own anonymous volumes
        d["volumes"] = [v for v in d["volumes"] if not v.get("anonymous")]
    assert theirs == ours
