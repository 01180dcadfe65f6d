"""Named volumes (issue 19): `ctr volume create|ls|inspect|rm|prune`, -v NAME:/PATH
made on first use and seeded from the image, --mount type=bind|volume|tmpfs, rm -v
and system prune --volumes, as a docker user checks them: with real containers
writing and reading the data, /proc/mounts inside, and the folders on the host."""

import json
import os
import subprocess

import pytest
from helpers import CTR, assert_refused
from test_image_defaults import make_image

NONE = ("--network", "none")


def run(ctr, *args, check=True):
    """`ctr run --rm` without a network (none is needed here)."""
    return ctr("run", "--rm", *NONE, *args, check=check)


def volume_names(ctr):
    return ctr("volume", "ls", "-q", check=True).stdout.split()


def volume_dirs(ctr):
    top = ctr.path("volumes")
    return sorted(e for e in os.listdir(top) if not e.startswith(".")) if os.path.isdir(
        top) else []


def one_line_error(r, message, code=125):
    assert r.returncode == code, r.stderr
    assert r.stderr.startswith("ctr: error: ") and message in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr


def test_create_ls_inspect_rm(ctr):
    assert ctr("volume", "create", "data", check=True).stdout == "data\n"
    assert ctr("volume", "create", "-l", "team=web", "-l", "tier=db", "labelled",
               check=True).stdout == "labelled\n"
    anon = ctr("volume", "create", check=True).stdout.strip()
    assert len(anon) == 64 and int(anon, 16) >= 0  # docker's random name
    assert ctr("volume", "create", "data", check=True).stdout == "data\n"  # exists: fine
    assert sorted(volume_names(ctr)) == sorted(["data", "labelled", anon])
    table = ctr("volume", "ls", check=True).stdout.splitlines()
    assert table[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert ["local", "data"] in [line.split() for line in table[1:]]
    rows = {r["Name"]: r for r in map(json.loads, ctr("volume", "ls", "--format", "json",
                                                      check=True).stdout.splitlines())}
    assert rows["labelled"]["Labels"] == {"team": "web", "tier": "db"}
    assert rows["data"]["Driver"] == "local"
    docs = json.loads(ctr("volume", "inspect", "data", "labelled", check=True).stdout)
    assert [d["Name"] for d in docs] == ["data", "labelled"]
    assert docs[0]["Mountpoint"] == ctr.path("volumes", "data", "_data")
    assert os.path.isdir(docs[0]["Mountpoint"]) and docs[0]["CreatedAt"].endswith("Z")
    one_line_error(ctr("volume", "inspect", "nosuch"), "no such volume: nosuch")
    assert ctr("volume", "inspect", "-f", "{{.Mountpoint}} {{.Labels.team}}", "labelled",
               check=True).stdout == ctr.path("volumes", "labelled", "_data") + " web\n"
    one_line_error(ctr("volume", "inspect", "-f", "{{if .Name}}", "data"), "template")
    assert ctr("volume", "rm", "data", anon, check=True).stdout.split() == ["data", anon]
    assert volume_names(ctr) == ["labelled"] and volume_dirs(ctr) == ["labelled"]
    one_line_error(ctr("volume", "rm", "data"), "no such volume: data")
    assert ctr("volume", "rm", "-f", "data", check=True).returncode == 0
    for bad in ("a", "a/b", "../x", "-x", ".hidden"):
        r = ctr("volume", "create", "--", bad)
        one_line_error(r, "invalid characters for a local volume name")
    ctr("volume", "rm", "labelled", check=True)
    assert volume_dirs(ctr) == []
    # docker's volume events: each create and destroy, the name as the actor's ID
    r = ctr("events", "--since", "1h", "--until", "0s", "--filter", "type=volume",
            "--format", "{{.Action}} {{.Actor.ID}} {{.Actor.Attributes.driver}}", check=True)
    assert r.stdout.splitlines() == [
        "create data local", "create labelled local", f"create {anon} local",
        "destroy data local", f"destroy {anon} local", "destroy labelled local"]
    r = ctr("events", "--since", "1h", "--until", "0s", "--filter", "volume=data",
            "--format", "{{.Action}}", check=True)
    assert r.stdout.split() == ["create", "destroy"]


def test_ls_filters(ctr):
    ctr("volume", "create", "-l", "team=web", "web-data", check=True)
    ctr("volume", "create", "-l", "team=db", "db-data", check=True)
    ctr("create", "--name", "user", *NONE, "-v", "db-data:/d", "busybox", "true", check=True)

    def ls(*filters):
        args = [a for f in filters for a in ("--filter", f)]
        return ctr("volume", "ls", "-q", *args, check=True).stdout.split()

    assert ls("dangling=true") == ["web-data"]
    assert ls("dangling=false") == ["db-data"]
    assert ls("name=web") == ["web-data"]
    assert ls("label=team") == ["db-data", "web-data"]
    assert ls("label=team=db") == ["db-data"]
    assert ls("label=team=db", "label=team=web") == ["db-data", "web-data"]  # one key ORs
    assert ls("label=team=db", "dangling=true") == []  # keys AND
    one_line_error(ctr("volume", "ls", "--filter", "colour=red"), "invalid --filter")
    ctr("rm", "user", check=True)
    ctr("volume", "rm", "web-data", "db-data", check=True)


def test_data_persists_across_instances_and_is_made_on_first_use(ctr):
    run(ctr, "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/file")
    assert volume_names(ctr) == ["data"]  # made by the first run, kept after its --rm
    assert open(ctr.path("volumes", "data", "_data", "file")).read() == "kept\n"
    # another instance, another path, --mount's spelling
    r = run(ctr, "--mount", "source=data,target=/elsewhere", "busybox",
            "cat", "/elsewhere/file")
    assert r.stdout == "kept\n"
    # two at once share it
    ctr("run", "-d", "--name", "a", *NONE, "-v", "data:/d", "busybox", "sleep", "100",
        check=True)
    run(ctr, "-v", "data:/d", "busybox", "sh", "-c", "echo from-b > /d/b")
    assert ctr("exec", "a", "cat", "/d/b", check=True).stdout == "from-b\n"
    doc = ctr.inspect("a")
    mounts = json.loads(ctr("inspect", "-f", "{{json .Mounts}}", "a", check=True).stdout)
    assert mounts == [{"Type": "volume", "Name": "data",
                       "Source": ctr.path("volumes", "data", "_data"), "Destination": "/d",
                       "Driver": "local", "Mode": "", "RW": True, "Propagation": ""}]
    assert doc["HostConfig"]["Binds"] == ["data:/d"]
    # docker's ps: the Mounts column and --filter volume=NAME|PATH
    assert ctr("ps", "--format", "{{.Names}} {{.Mounts}}", check=True).stdout == "a data\n"
    for key in ("data", "/d", ctr.path("volumes", "data", "_data")):
        assert ctr("ps", "-q", "--filter", f"volume={key}", check=True).stdout.strip()
    assert ctr("ps", "-q", "--filter", "volume=other", check=True).stdout == ""


def test_seeded_from_the_image_at_first_use_and_never_again(ctr):
    make_image(ctr, "seed", {"Cmd": ["true"]},
               files={"/data/seed.txt": "from the image\n", "/data/sub/deep": "deep\n"})
    os.chmod(ctr.path("images", "seed", "rootfs", "data"), 0o750)
    os.chown(ctr.path("images", "seed", "rootfs", "data"), 33, 33)
    r = run(ctr, "-v", "vol:/data", "seed", "sh", "-c",
            "cat /data/seed.txt /data/sub/deep; stat -c '%u:%g %a' /data")
    assert r.stdout == "from the image\ndeep\n33:33 750\n"
    # the user's changes stay: not seeded again while it holds something
    run(ctr, "-v", "vol:/data", "seed", "sh", "-c", "rm -r /data/seed.txt /data/sub; "
        "echo mine > /data/mine")
    r = run(ctr, "-v", "vol:/data", "seed", "ls", "/data")
    assert r.stdout == "mine\n"
    # another image at the same place does not seed a volume that has content
    make_image(ctr, "other", {"Cmd": ["true"]}, files={"/data/other.txt": "other\n"})
    assert run(ctr, "-v", "vol:/data", "other", "ls", "/data").stdout == "mine\n"
    # a volume made by `volume create` is seeded at its first use too; nocopy: never
    ctr("volume", "create", "pre", check=True)
    assert run(ctr, "-v", "pre:/data", "seed", "cat", "/data/seed.txt").stdout == (
        "from the image\n")
    assert run(ctr, "-v", "bare:/data:nocopy", "seed", "ls", "-A", "/data").stdout == ""
    assert run(ctr, "--mount", "source=bare2,target=/data,volume-nocopy", "seed",
               "ls", "-A", "/data").stdout == ""
    # the image's files are untouched by what was written in the volume
    assert not os.path.exists(ctr.path("images", "seed", "rootfs", "data", "mine"))


def test_read_only_volumes_and_binds(ctr, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "f").write_text("host\n")
    run(ctr, "-v", "data:/data", "busybox", "sh", "-c", "echo x > /data/x")
    script = ("for d in /v /m /b /mb; do echo y > $d/new 2>/dev/null && echo $d written;"
              " done; cat /v/x /m/x /b/f /mb/f; grep -E ' /(v|m|b|mb) ' /proc/mounts"
              " | cut -d' ' -f2,4 | cut -d, -f1")
    r = run(ctr, "-v", "data:/v:ro", "--mount", "source=data,target=/m,readonly",
            "-v", f"{host}:/b:ro", "--mount", f"type=bind,src={host},dst=/mb,ro=true",
            "busybox", "sh", "-c", script)
    assert "written" not in r.stdout
    assert r.stdout.splitlines()[:4] == ["x", "x", "host", "host"]
    assert sorted(r.stdout.splitlines()[4:]) == ["/b ro", "/m ro", "/mb ro", "/v ro"]
    assert sorted(os.listdir(host)) == ["f"]
    assert sorted(os.listdir(ctr.path("volumes", "data", "_data"))) == ["x"]
    # rw, and readonly=false, write
    r = run(ctr, "-v", "data:/v:rw", "--mount", f"type=bind,source={host},target=/b,"
            "readonly=false", "busybox", "sh", "-c", "echo 1 > /v/w && echo 2 > /b/w")
    assert (host / "w").read_text() == "2\n"


def test_tmpfs_mounts_with_size_mode_and_readonly(ctr):
    r = run(ctr, "--mount", "type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770",
            "--mount", "type=tmpfs,destination=/ro,readonly", "busybox", "sh", "-c",
            "grep -E ' /(t|ro) ' /proc/mounts; stat -c '%a' /t; "
            "head -c 2000000 /dev/zero > /t/big 2>/dev/null || echo full; "
            "touch /ro/x 2>/dev/null || echo refused")
    lines = r.stdout.splitlines()
    t = next(line for line in lines if " /t " in line).split()
    assert t[2] == "tmpfs" and "size=1024k" in t[3] and "mode=1770" in t[3]
    ro = next(line for line in lines if " /ro " in line).split()
    assert ro[2] == "tmpfs" and ro[3].startswith("ro")
    assert "1770" in lines and "full" in lines and "refused" in lines
    assert volume_dirs(ctr) == []  # a tmpfs is no volume


def test_a_volume_in_use_refuses_rm(ctr):
    ctr("run", "-d", "--name", "user", *NONE, "-v", "busy:/data", "busybox", "sleep", "100",
        check=True)
    one_line_error(ctr("volume", "rm", "busy"), "volume is in use - [user]")
    ctr("stop", "-t", "0", "user", check=True)
    # a stopped instance still names it (docker's rule): rm the instance first
    one_line_error(ctr("volume", "rm", "busy"), "volume is in use - [user]")
    assert ctr("volume", "prune", "-f", "-a", check=True).stdout.startswith(
        "Total reclaimed space")
    assert volume_names(ctr) == ["busy"]
    ctr("rm", "-v", "user", check=True)  # rm -v never takes a named volume
    assert volume_names(ctr) == ["busy"]
    ctr("volume", "rm", "busy", check=True)
    assert volume_dirs(ctr) == []


def test_rm_v_removes_the_anonymous_volumes_only(ctr):
    ctr("run", "--name", "job", *NONE, "-v", "named:/n", "-v", "/anon",
        "--mount", "type=volume,target=/anon2", "busybox", "sh", "-c",
        "echo 1 > /n/f; echo 2 > /anon/f; echo 3 > /anon2/f", check=True)
    doc = ctr.inspect("job")
    sources = {v["target"]: v["source"] for v in doc["spec"]["volumes"]}
    assert sources["/n"] == ctr.path("volumes", "named", "_data")
    anon = [os.path.basename(os.path.dirname(sources[t])) for t in ("/anon", "/anon2")]
    assert sorted(volume_names(ctr)) == sorted(["named", *anon])
    rows = {r["Name"]: r for r in map(json.loads, ctr("volume", "ls", "--format", "json",
                                                      check=True).stdout.splitlines())}
    assert rows[anon[0]]["Anonymous"] and not rows["named"]["Anonymous"]
    mounts = {m["Destination"]: m for m in json.loads(
        ctr("inspect", "-f", "{{json .Mounts}}", "job", check=True).stdout)}
    assert mounts["/anon"]["Type"] == "volume" and mounts["/anon"]["Name"] == anon[0]
    ctr("rm", "-v", "job", check=True)
    assert volume_names(ctr) == ["named"] and volume_dirs(ctr) == ["named"]
    # --rm: the same
    run(ctr, "-v", "named:/n", "-v", "/anon", "busybox", "true")
    assert volume_dirs(ctr) == ["named"]
    ctr("volume", "rm", "named", check=True)


def test_prune_takes_the_unused_anonymous_ones_and_with_a_the_named(ctr):
    ctr("volume", "create", "spare", check=True)
    ctr("run", "--name", "old", *NONE, "-v", "/anon", "busybox", "sh", "-c",
        "head -c 100000 /dev/zero > /anon/f", check=True)
    anon = os.path.basename(os.path.dirname(ctr.inspect("old")["spec"]["volumes"][0]["source"]))
    ctr("rm", "old", check=True)  # a plain rm keeps it, as docker's
    ctr("run", "-d", "--name", "live", *NONE, "-v", "used:/u", "-v", "/keep", "busybox",
        "sleep", "100", check=True)
    live_anon = os.path.basename(os.path.dirname(
        ctr.inspect("live")["spec"]["volumes"][1]["source"]))
    assert sorted(volume_names(ctr)) == sorted(["spare", anon, "used", live_anon])
    rows = {r["type"]: r for r in json.loads(ctr("system", "df", "--format", "json",
                                                  check=True).stdout)}
    assert rows["Local Volumes"]["total"] == 4 and rows["Local Volumes"]["active"] == 2
    assert rows["Local Volumes"]["reclaimable"] >= 100000
    r = ctr("volume", "prune", input="n\n")
    assert r.returncode != 0 and "Are you sure" in r.stderr
    assert len(volume_names(ctr)) == 4
    out = ctr("volume", "prune", "-f", check=True).stdout
    assert out.splitlines()[:2] == ["Deleted Volumes:", anon]
    assert sorted(volume_names(ctr)) == sorted(["spare", "used", live_anon])
    out = ctr("volume", "prune", "-f", "-a", check=True).stdout
    assert out.splitlines()[:2] == ["Deleted Volumes:", "spare"]
    assert sorted(volume_names(ctr)) == sorted(["used", live_anon])


def test_system_prune_volumes_takes_anonymous_ones(ctr):
    ctr("volume", "create", "named", check=True)
    ctr("run", "--name", "old", *NONE, "-v", "/anon", "busybox", "true", check=True)
    anon = os.path.basename(os.path.dirname(ctr.inspect("old")["spec"]["volumes"][0]["source"]))
    out = ctr("system", "prune", "-f", check=True).stdout
    assert "deleted instance: old" in out and anon not in out
    assert sorted(volume_names(ctr)) == sorted(["named", anon])
    out = ctr("system", "prune", "-f", "--volumes", check=True).stdout
    assert f"deleted volume: {anon}" in out
    assert volume_names(ctr) == ["named"]  # named ones stay (docker 23+)


BAD = [
    (["-v", "x:/data"], "invalid characters for a local volume name"),
    (["-v", "./rel:/data"], "invalid characters for a local volume name"),
    (["-v", "data:relative"], "must be an absolute path"),
    (["-v", "data:/"], "cannot mount over the root"),
    (["-v", "data:/d:bogus"], "unknown option 'bogus'"),
    (["-v", "/no/such/host/dir:/d"], "does not exist on the host"),
    (["-v", "data:/d:ro:extra"], "expected SRC:DST[:OPTIONS]"),
    (["-v", "data:/d", "-v", "other:/d"], "duplicate mount point: /d"),
    (["-v", "data:/d", "--tmpfs", "/d"], "duplicate mount point: /d"),
    (["--mount", "type=nfs,target=/d"], "unknown type 'nfs'"),
    (["--mount", "source=data"], "target is required"),
    (["--mount", "colour=red,target=/d"], "unknown key 'colour'"),
    (["--mount", "type=bind,target=/d"], "a bind needs a source"),
    (["--mount", "type=bind,source=rel,target=/d"], "absolute host path"),
    (["--mount", "type=bind,source=/tmp,target=/d,bind-propagation=shared"],
     "bind-propagation=shared is not supported"),
    (["--mount", "type=tmpfs,source=x,target=/d"], "a tmpfs has no source"),
    (["--mount", "type=tmpfs,target=/d,tmpfs-size=lots"], "tmpfs-size"),
    (["--mount", "type=tmpfs,target=/d,tmpfs-mode=rwx"], "invalid tmpfs-mode"),
    (["--mount", "source=data,target=/d,tmpfs-size=1m"], "tmpfs-size is for type=tmpfs only"),
    (["--mount", "source=data,target=/d,readonly=maybe"], "expected true or false"),
    (["--mount", "source=data,target=/d,target=/e"], "target is given twice"),
    (["--mount", "source=data,target="], "target needs a value"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_specs_are_refused_and_leave_nothing(ctr, args, message):
    r = ctr("run", "--rm", *NONE, *args, "busybox", "true")
    assert_refused(ctr, r, message)
    assert volume_dirs(ctr) == []
    r = ctr("create", *NONE, *args, "busybox", "true")
    assert_refused(ctr, r, message)


def test_a_refused_instance_leaves_no_volume_it_made(ctr):
    ctr("create", "--name", "taken", *NONE, "busybox", "true", check=True)
    r = ctr("run", "--name", "taken", *NONE, "-v", "fresh:/d", "busybox", "true")
    one_line_error(r, "already in use")
    assert volume_dirs(ctr) == []  # the volume it made for itself went again
    # an existing one stays, of course
    ctr("volume", "create", "old", check=True)
    r = ctr("run", "--name", "taken", *NONE, "-v", "old:/d", "busybox", "true")
    assert r.returncode == 125
    assert volume_dirs(ctr) == ["old"]
    ctr("volume", "rm", "old", check=True)


def test_a_vm_refuses_volumes_and_mounts(ctr):
    for args in (["-v", "data:/d"], ["--mount", "type=tmpfs,target=/t"],
                 ["--mount", "source=data,target=/d"]):
        r = ctr("run", "--rm", "--vm", *NONE, *args, "busybox", "true")
        assert_refused(ctr, r, "are for containers, not VMs")
        assert volume_dirs(ctr) == []


def test_a_new_volume_of_a_userns_instance_belongs_to_its_root(ctr, subids):
    make_image(ctr, "seed", {"Cmd": ["true"]}, files={"/data/seed.txt": "seeded\n"})
    r = ctr("run", "--rm", *NONE, "--userns", "auto", "-v", "uvol:/data", "seed", "sh", "-c",
            "cat /data/seed.txt; touch /data/new; stat -c '%u:%g' /data /data/new",
            env=subids)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["seeded", "0:0", "0:0"]
    st = os.stat(ctr.path("volumes", "uvol", "_data", "new"))
    assert (st.st_uid, st.st_gid) == (1500000000, 1500000000)  # the block's root on the host
    ctr("volume", "rm", "uvol", check=True)
    # one of the host's root cannot be seeded from inside: said in one line, nothing left
    ctr("volume", "create", "hosts", check=True)
    r = ctr("run", "--rm", *NONE, "--userns", "auto", "-v", "hosts:/data", "seed", "true",
            env=subids)
    one_line_error(r, "the volume hosts belongs to ids this instance's user namespace")
    assert os.listdir(ctr.path("instances")) == []
    assert os.listdir(ctr.path("volumes", "hosts", "_data")) == []
    ctr("volume", "rm", "hosts", check=True)


def test_volume_names_are_completed(ctr):
    ctr("volume", "create", "alpha", check=True)
    ctr("volume", "create", "beta", check=True)
    script = ctr("completion", "bash", check=True).stdout

    def complete(*words):
        line = " ".join(words)
        r = subprocess.run(
            ["bash", "-c", f'{script}\nCOMP_WORDS=({line} ""); COMP_CWORD={len(words)}; '
             f'_ctr_completion {CTR}; printf "%s\\n" "${{COMPREPLY[@]}}"'],
            capture_output=True, text=True, env=ctr.env(), check=True)
        return r.stdout.split()

    assert complete("ctr", "volume", "rm") == ["alpha", "beta"]
    assert complete("ctr", "volume", "inspect") == ["alpha", "beta"]
    ctr("volume", "rm", "alpha", "beta", check=True)
