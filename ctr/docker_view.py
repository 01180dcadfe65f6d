"""An instance as docker describes it: the field names scripts written for
docker read (`.State.Status`, `.State.Pid`, `.Config.Env`, `.NetworkSettings.IPAddress`,
`.HostConfig.Memory`...), built from ctr's own spec and state. Read-only; ctr's
own names stay beside these in `ctr inspect`."""

import datetime
import os

from ctr import store as st

# docker's container states: ctr's `stopped` is docker's `exited`.
DOCKER_STATUS = {st.CREATED: "created", st.RUNNING: "running", st.PAUSED: "paused",
                 st.RESTARTING: "restarting", st.STOPPED: "exited", st.CORRUPT: "dead"}
ZERO_TIME = "0001-01-01T00:00:00Z"


def status(state):
    return DOCKER_STATUS.get(state.get("status"), state.get("status"))


def published(spec, state):
    """The ports published now: those a running instance recorded at its start
    (-P's chosen then), else the spec's own -p ones."""
    net = state.get("net") or {}
    if state.get("status") in (st.RUNNING, st.PAUSED) and net.get("ports") is not None:
        return net["ports"]
    return spec.ports


def _ports(spec, state=None):
    """{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}: docker's port map."""
    out = {}
    for p in (published(spec, state) if state else spec.ports):
        out.setdefault(f"{p['port']}/{p['proto']}", []).append(
            {"HostIp": p["host_ip"], "HostPort": str(p["host_port"])})
    return out


def _volume_mount(v):
    """docker's Mounts entry of a -v/--mount: a volume has a Name and a Driver."""
    out = {"Type": "bind", "Source": v["source"] or "", "Destination": v["target"],
           "Mode": "ro" if v.get("readonly") else "", "RW": not v.get("readonly"),
           "Propagation": "rprivate"}
    if v.get("anonymous") or v.get("name"):
        name = v.get("name") or os.path.basename(os.path.dirname(v["source"] or ""))
        out.update(Type="volume", Name=name, Driver="local", Propagation="")
    return out


def _mounts(spec):
    mounts = [_volume_mount(v) for v in spec.volumes]
    mounts += [{"Type": "tmpfs", "Source": "", "Destination": t["path"], "Mode": "",
                "RW": "ro" not in t.get("flags", ()), "Propagation": ""} for t in spec.tmpfs]
    return mounts


def _host_config(spec):
    res = spec.resources
    restart = spec.restart
    memory = res.get("memory", 0)
    return {
        "Memory": memory,
        "MemorySwap": res.get("memory_swap", 0),
        "NanoCpus": int(res["cpus"] * 1e9) if res.get("cpus") else 0,
        "CpuShares": res.get("cpu_shares", 0),
        "CpusetCpus": res.get("cpuset_cpus", ""),
        "PidsLimit": res.get("pids_limit"),
        "BlkioWeight": res.get("blkio_weight", 0),
        "CgroupParent": spec.cgroup_parent or "",
        "CgroupnsMode": spec.cgroupns,
        "Privileged": spec.privileged,
        "ReadonlyRootfs": spec.read_only,
        "CapAdd": None,
        "CapDrop": None,
        "NetworkMode": "default" if spec.network == "bridge" else spec.network,
        "PortBindings": _ports(spec),
        "RestartPolicy": {"Name": "" if restart.get("policy") == "no" else restart["policy"],
                          "MaximumRetryCount": restart.get("max_retries", 0)},
        "AutoRemove": spec.remove,
        "Init": spec.init,
        "Tmpfs": {t["path"]: ",".join([*t.get("flags", ()), *filter(None, [t.get("data")])])
                  for t in spec.tmpfs},
        "Binds": [f"{v.get('name') or v['source']}:{v['target']}"
                  + (":ro" if v.get("readonly") else "")
                  for v in spec.volumes if not v.get("anonymous")],
        **_run_options(spec),
    }


def _run_options(spec):
    """HostConfig's names for the run flags of ctr.spec.options and their limits."""
    opts, res = spec.options, spec.resources
    ipc = opts.ipc or "private"
    return {
        "ExtraHosts": [f"{name}:{ip}" for name, ip in opts.extra_hosts or ()] or None,
        "Dns": list(opts.dns or ()),
        "DnsSearch": list(opts.dns_search or ()),
        "DnsOptions": list(opts.dns_options or ()),
        "Devices": [{"PathOnHost": d["source"], "PathInContainer": d["target"],
                     "CgroupPermissions": d["access"]} for d in opts.devices or ()],
        "ShmSize": opts.shm_size or (64 << 20 if ipc in ("private", "shareable") else 0),
        "Sysctls": dict(opts.sysctls or {}),
        "PidMode": opts.pid or "",
        "IpcMode": ipc,
        "UTSMode": opts.uts or "",
        "GroupAdd": list(opts.group_add or ()) or None,
        "OomScoreAdj": opts.oom_score_adj or 0,
        "ContainerIDFile": opts.cidfile or "",
        "MemoryReservation": res.get("memory_reservation", 0),
        "CpuPeriod": res.get("cpu_period", 0),
        "CpuQuota": res.get("cpu_quota", 0),
    }


def _network_settings(spec, state):
    net = state.get("net") or {}
    ip = net.get("ip") or ""
    live = state.get("status") in (st.RUNNING, st.PAUSED)
    networks = {}
    if spec.network not in ("none", "host") and not spec.network.startswith("container:"):
        networks[spec.network] = {"IPAddress": ip if live else "",
                                  "Gateway": net.get("gateway", "") if live else "",
                                  "IPPrefixLen": net.get("prefixlen", 0) if live else 0,
                                  "MacAddress": net.get("mac", "") if live else ""}
    return {"IPAddress": ip if live else "", "Gateway": net.get("gateway", "") if live else "",
            "Ports": _ports(spec, state) if live else {}, "Networks": networks}


def _healthcheck_config(spec):
    hc = spec.healthcheck
    if not hc:
        return None
    return {"Test": list(hc["test"]), **{k: hc[f] for k, f in (
        ("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "start_period"),
        ("Retries", "retries")) if hc.get(f) is not None}}


def view(rec, spec, state, image_id=None):
    """The docker-named fields of one instance (as `docker inspect` has them)."""
    from ctr.health import current

    status = state.get("status")
    exit_code = state.get("exit_code")
    health = current(rec, spec, state)
    doc = {
        "Id": spec.id,
        "Name": f"/{spec.name}",
        "Created": state.get("created") or ZERO_TIME,
        "Path": spec.command[0] if spec.command else "",
        "Args": list(spec.command[1:]),
        "State": {
            "Status": DOCKER_STATUS.get(status, status),
            "Running": status in (st.RUNNING, st.PAUSED),
            "Paused": status == st.PAUSED,
            "Restarting": status == st.RESTARTING,
            "OOMKilled": bool(state.get("oom_killed")),
            "Dead": status == st.CORRUPT,
            "Pid": state.get("pid") or 0 if status in (st.RUNNING, st.PAUSED) else 0,
            "ExitCode": exit_code if exit_code is not None else 0,
            "Error": state.get("error") or "",
            "StartedAt": state.get("started") or ZERO_TIME,
            "FinishedAt": state.get("finished") or ZERO_TIME,
        },
        "Image": image_id or spec.image_id,
        "RestartCount": state.get("restart_count", 0),
        "LogPath": rec.log_path,
        "Driver": "overlay",
        "Config": {
            "Hostname": spec.hostname,
            "User": spec.user or "",
            "Tty": spec.tty,
            "Env": list(spec.env),
            "Cmd": list(spec.command),
            "Image": spec.image,
            "WorkingDir": spec.workdir,
            "Entrypoint": None,
            "Labels": dict(spec.labels or {}),
            "StopSignal": spec.stop_signal,
            "ExposedPorts": {f"{p['port']}/{p['proto']}": {}
                             for p in (*spec.ports, *spec.publish_all)},
        },
        "NetworkSettings": _network_settings(spec, state),
        "Mounts": _mounts(spec),
        "HostConfig": _host_config(spec),
    }
    if health is not None:
        doc["State"]["Health"] = health
    if spec.healthcheck:
        doc["Config"]["Healthcheck"] = _healthcheck_config(spec)
    return doc


def _ago(seconds):
    """docker's human durations: 'Less than a second', '5 seconds', 'About a minute'..."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = round(s / 60)
    if m == 1:
        return "About a minute"
    if s < 3600:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if s < 48 * 3600:
        return f"{h} hours"
    if s < 7 * 24 * 3600 * 2:
        return f"{round(s / 86400)} days"
    return f"{round(s / (7 * 86400))} weeks"


def _since(stamp, now):
    if not stamp:
        return None
    try:
        when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (now - when).total_seconds())


def health_status(rec, spec, state):
    """starting | healthy | unhealthy, or none without a check (ps's filter)."""
    if spec is None:
        return "none"
    from ctr.health import status

    return status(rec, spec, state)


def ps_row(rec, spec, state, now=None):
    """One row of `ctr ps`, with docker's fields (.ID, .Image, .Command, .CreatedAt,
    .RunningFor, .Status, .State, .Ports, .Names, .Labels)."""
    now = now or datetime.datetime.now(datetime.UTC)
    status = state.get("status")
    created = _since(state.get("created"), now)
    health = health_status(rec, spec, state)
    if status in (st.RUNNING, st.PAUSED):
        up = _since(state.get("started"), now)
        text = f"Up {_ago(up or 0)}" + (" (Paused)" if status == st.PAUSED else "")
        if health != "none":  # docker's: Up 5 minutes (healthy), (health: starting)
            text += f" (health: {health})" if health == "starting" else f" ({health})"
    elif status == st.RESTARTING:
        ended = _since(state.get("finished"), now) or 0
        text = f"Restarting ({state.get('exit_code')}) {_ago(ended)} ago"
    elif status == st.STOPPED:
        ended = _since(state.get("finished"), now)
        code = state.get("exit_code")
        text = (f"Exited ({code if code is not None else 0}) {_ago(ended)} ago" if ended is not None
                else f"Exited ({code if code is not None else 0})")
    else:
        text = DOCKER_STATUS.get(status, status or "").capitalize()
    ports = ", ".join(f"{p['host_ip']}:{p['host_port']}->{p['port']}/{p['proto']}"
                      for p in published(spec, state)) \
        if spec and status in (st.RUNNING, st.PAUSED) else ""
    labels = dict(spec.labels or {}) if spec else {}
    mounts = [_volume_mount(v) for v in spec.volumes] if spec else []
    return {
        "ID": spec.id if spec else "",
        "Image": spec.image if spec else "",
        "Command": " ".join(spec.command) if spec else "",
        "CreatedAt": state.get("created") or "",
        "RunningFor": f"{_ago(created)} ago" if created is not None else "",
        "Status": text,
        "State": DOCKER_STATUS.get(status, status),
        "Ports": ports,
        "Names": rec.name,
        "Labels": ",".join(f"{k}={v}" for k, v in labels.items()),
        "Mounts": ",".join(m.get("Name") or m["Source"] for m in mounts),
        "Kind": spec.kind if spec else "",
        "Pid": state.get("pid") if status in (st.RUNNING, st.PAUSED) else None,
        "ExitCode": state.get("exit_code"),
        "Health": health,
        "label_map": labels,
        "mount_keys": {key for m in mounts
                       for key in (m.get("Name"), m["Source"], m["Destination"]) if key},
    }


def image_view(meta):
    """An image record under docker's names (`docker image inspect`): Id, RepoTags,
    RepoDigests, Created, Size, Architecture, Os, Config (the image's OCI config;
    a local image's cmd/env/workdir), RootFS.Layers (diff IDs, bottom first)."""
    config = meta.get("config")
    if not isinstance(config, dict):
        config = {"Cmd": meta.get("cmd"), "Env": meta.get("env") or [],
                  "WorkingDir": meta.get("workdir") or ""}
    name = meta.get("name", "")
    digest = meta.get("digest")
    repo = name.rsplit("@", 1)[0]
    if ":" in repo.rsplit("/", 1)[-1]:
        repo = repo.rsplit(":", 1)[0]
    return {
        "Id": meta.get("id", ""),
        "RepoTags": [name] if name and "@" not in name else [],
        "RepoDigests": [f"{repo}@{digest}"] if digest else [],
        "Created": meta.get("created") or ZERO_TIME,
        "Size": meta.get("size", 0),
        "Architecture": meta.get("architecture", "amd64"),
        "Os": meta.get("os", "linux"),
        "Config": config,
        "RootFS": {"Type": "layers", "Layers": list(meta.get("layers") or [])},
    }
